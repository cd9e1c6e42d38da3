"""DenseNet-121/161/169/201 dilated as the DenseASPP paper does it.

DenseASPP §3 (and report §4.2): "remove the last two pooling layers ... and set the dilation
rates of the convolution layers after the two removed pooling layers to be 2 and 4", giving
output stride 8. The network is torchvision's, so its ImageNet weights load unchanged; the
surgery only removes the average pools of the transitions past the target stride and dilates
the 3×3 convolutions of the dense layers after them.

Options the report and the official code need:

* ``num_blocks`` < 4 cuts the network after an earlier dense block (report Table 1, models #1–#3).
* ``official_layout`` adds the official DenseASPP code's ``transition4`` (BN-ReLU-1×1 conv
  halving the channels, no pool), its ``norm5`` BatchNorm on the halved channels, and a ReLU
  (``relu5``, no weights): in the official ``models/DenseASPP.py`` the first ASPP block,
  ``_DenseAsppBlock(bn_start=False)``, starts with ``nn.ReLU(inplace=True)`` on the backbone
  output, which rectifies that tensor in place before ``torch.cat((aspp3, feature), dim=1)``
  concatenates it: the official head sees and passes on ``relu(norm5(·))``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torchvision import models

from ...errors import ConfigError
from .base import Backbone, StagePlan, set_conv
from .weights import build_pretrained

# (growth, stem channels, layers per block) of torchvision's variants.
DENSENET_SPECS = {
    "densenet121": (32, 64, (6, 12, 24, 16)),
    "densenet161": (48, 96, (6, 12, 36, 24)),
    "densenet169": (32, 64, (6, 12, 32, 32)),
    "densenet201": (32, 64, (6, 12, 48, 32)),
}


def _block_channels(arch: str) -> list[int]:
    growth, channels, layers = DENSENET_SPECS[arch]
    out = []
    for i, n in enumerate(layers):
        channels += n * growth
        out.append(channels)
        if i < 3:
            channels //= 2
    return out


class DenseNetBackbone(Backbone):
    """Dilated DenseNet feature extractor.

    Args:
        arch: ``densenet121`` | ``densenet161`` | ``densenet169`` | ``densenet201``.
        output_stride: 8, 16 or 32.
        pretrained: see :mod:`atrous.models.backbones.weights`.
        frozen: freeze parameters and BatchNorm statistics.
        num_blocks: keep dense blocks 1..``num_blocks`` (1–4); the output is the last kept
            block's concatenated features (no transition after it, no ``norm5`` unless 4).
        official_layout: add ``transition4``, the official ``norm5`` and ``relu5`` (DenseASPP code).
        memory_efficient: torchvision's checkpointed dense layers (less memory, slower).

    Features: ``block1`` … ``block{num_blocks}``; the last one is the head's input.
    Shapes: ``(N, 3, H, W)`` → ``block_k``: ``(N, C_k, ⌈H/s_k⌉, ⌈W/s_k⌉)``.
    """

    input_conv_name = "features.conv0"

    def __init__(
        self,
        arch: str = "densenet121",
        *,
        output_stride: int = 8,
        pretrained: bool | str | None = False,
        frozen: bool = False,
        num_blocks: int = 4,
        official_layout: bool = False,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        if arch not in DENSENET_SPECS:
            raise ConfigError(f"unknown DenseNet {arch!r}; choose from {sorted(DENSENET_SPECS)}")
        if num_blocks not in (1, 2, 3, 4):
            raise ConfigError(f"num_blocks must be 1, 2, 3 or 4, got {num_blocks!r}")
        if official_layout and num_blocks != 4:
            raise ConfigError("official_layout needs all four dense blocks (num_blocks: 4)")
        net = build_pretrained(
            arch,
            getattr(models, arch),
            pretrained,
            ignore_prefixes=("classifier.",),
            memory_efficient=memory_efficient,
        )
        tv: nn.Sequential = net.features
        self.arch, self.num_blocks, self.official_layout = arch, num_blocks, official_layout
        names = ["conv0", "norm0", "relu0", "pool0"]
        for i in range(1, num_blocks + 1):
            names.append(f"denseblock{i}")
            if i < num_blocks:
                names.append(f"transition{i}")
        self.features = nn.Sequential(OrderedDict((n, getattr(tv, n)) for n in names))
        channels = _block_channels(arch)[:num_blocks]
        if num_blocks == 4:
            if official_layout:
                c = channels[-1]
                self.features.add_module("transition4", _official_transition(c))
                self.features.add_module("norm5", nn.BatchNorm2d(c // 2))
                self.features.add_module("relu5", nn.ReLU())
                channels[-1] = c // 2
            else:
                self.features.add_module("norm5", tv.norm5)
        self._channels = channels
        # Stem (conv0 + pool0) has stride 4; each kept transition halves the resolution.
        self.stage_strides = [4] + [2] * (num_blocks - 1)
        self.set_output_stride(output_stride)
        if frozen:
            self.freeze()

    def _apply_plan(self, plans: list[StagePlan]) -> None:
        for i, plan in enumerate(plans[1:], start=1):
            trans = getattr(self.features, f"transition{i}")
            # torchvision's transition pool; removed past the target stride (DenseASPP §3).
            trans.pool = nn.AvgPool2d(kernel_size=2, stride=2) if plan.stride == 2 else nn.Identity()
            for layer in getattr(self.features, f"denseblock{i + 1}").values():
                set_conv(layer.conv2, dilation=plan.dilation)
        names = [f"block{i}" for i in range(1, self.num_blocks + 1)]
        self._declare_features(names, self._channels, plans)

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        last = f"block{self.num_blocks}"
        for name, module in self.features.named_children():
            x = module(x)
            if name.startswith("denseblock") and name != f"denseblock{self.num_blocks}":
                if keep is None or f"block{name[-1]}" in keep:
                    out[f"block{name[-1]}"] = x
        if keep is None or last in keep:
            out[last] = x
        return out


def _official_transition(channels: int) -> nn.Sequential:
    """Official DenseASPP ``transition4``: BN-ReLU-1×1 conv to half the channels, no pooling."""
    return nn.Sequential(
        OrderedDict(
            norm=nn.BatchNorm2d(channels),
            relu=nn.ReLU(inplace=True),
            conv=nn.Conv2d(channels, channels // 2, kernel_size=1, bias=False),
        )
    )

