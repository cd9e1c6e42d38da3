"""MobileNetV3-Large dilated to output stride 8/16/32.

torchvision's network and weights. The dilation layout is torchvision's own
(``mobilenet_v3_large(dilated=True)``, used by its DeepLabV3/LR-ASPP): in a dilated stage the
depthwise convolution that strides in the undilated network already uses the stage's new rate. At output stride 16
this is exactly torchvision's dilated network; output stride 8 also dilates the stride-16
stage, which torchvision cannot do (the report had to upsample stride-32 features instead).

``return_blocks`` also returns the outputs of single blocks of ``features``: torchvision's
``deeplabv3_mobilenet_v3_large`` puts its auxiliary ``FCNHead`` on ``features[4]``, the first
(strided) block of the stride-8 stage, not on a stage's last block.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision import models

from ...errors import ConfigError
from .base import Backbone, StagePlan, set_conv
from .weights import build_pretrained

# Indices into torchvision's ``features``: the first block of each stride-2 stage, and the
# last block of each stage (whose output we return).
_STAGE_STARTS = (0, 2, 4, 7, 13)
_STAGE_ENDS = (1, 3, 6, 12, 16)


class MobileNetV3Backbone(Backbone):
    """Dilated MobileNetV3-Large feature extractor.

    Args:
        output_stride: 8, 16 or 32.
        return_blocks: indices ``i`` of ``features`` blocks whose outputs are returned as well,
            as ``block{i}`` (e.g. ``[4]``: 40 channels at stride 8, torchvision's aux input).
        pretrained: see :mod:`atrous.models.backbones.weights`.
        frozen: freeze parameters and BatchNorm statistics.

    Features ``stage1`` … ``stage5``: 16, 24, 40, 112, 960 channels at strides 2, 4, 8, 16, 32
    (output stride 32), with any ``block{i}`` before the stage it belongs to.
    Shapes: ``(N, 3, H, W)`` → ``stage5``: ``(N, 960, ⌈H/os⌉, ⌈W/os⌉)``.
    """

    input_conv_name = "features.0.0"

    def __init__(
        self,
        *,
        output_stride: int = 16,
        return_blocks: Sequence[int] = (),
        pretrained: bool | str | None = False,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        net = build_pretrained(
            "mobilenet_v3_large", models.mobilenet_v3_large, pretrained, ignore_prefixes=("classifier.",)
        )
        self.features = net.features
        last = len(self.features) - 1
        self.return_blocks = tuple(sorted({int(i) for i in return_blocks}))
        if any(not 0 <= i < last for i in self.return_blocks):
            raise ConfigError(
                f"return_blocks must be indices of blocks 0..{last - 1} of features "
                f"(block {last} is stage5, always returned), got {list(return_blocks)}"
            )
        self._channels = [self.features[i].out_channels for i in _STAGE_ENDS]
        self.stage_strides = [2, 2, 2, 2, 2]
        self.set_output_stride(output_stride)
        if frozen:
            self.freeze()

    def _apply_plan(self, plans: list[StagePlan]) -> None:
        bounds = list(zip(_STAGE_STARTS, _STAGE_ENDS, strict=True))
        names: list[str] = []
        channels: list[int] = []
        feature_plans: list[StagePlan] = []
        for stage, ((start, end), plan) in enumerate(zip(bounds, plans, strict=True)):
            for index in range(start, end + 1):
                for conv in self.features[index].modules():
                    if isinstance(conv, nn.Conv2d) and conv.kernel_size[0] > 1:
                        # torchvision's layout: the strided depthwise conv takes the new rate too.
                        set_conv(conv, dilation=plan.dilation)
                        if index == start:
                            set_conv(conv, stride=plan.stride)
            blocks = [i for i in self.return_blocks if start <= i <= end]
            names += [f"block{i}" for i in blocks] + [f"stage{stage + 1}"]
            channels += [self.features[i].out_channels for i in blocks] + [self._channels[stage]]
            feature_plans += [plan] * (len(blocks) + 1)
        self._declare_features(names, channels, feature_plans)

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        stage = 0
        for index, block in enumerate(self.features):
            x = block(x)
            if index in self.return_blocks and (keep is None or f"block{index}" in keep):
                out[f"block{index}"] = x
            if index == _STAGE_ENDS[stage]:
                stage += 1
                if keep is None or f"stage{stage}" in keep:
                    out[f"stage{stage}"] = x
        return out
