"""ResNet-18/34/50/101 dilated to output stride 8/16/32, with DeepLabv3 multi-grid.

The network is torchvision's (weights load unchanged). Without ``multi_grid`` the dilation
layout is exactly torchvision's ``replace_stride_with_dilation``: the first unit of a dilated
stage keeps the previous rate in its 3×3 convolution (the one that strides in the undilated network), the other units use
the new rate — the layout under which the dilated network, sampled every ``s`` pixels,
reproduces the strided one, and the one torchvision's DeepLabV3 checkpoints were trained with.

``num_stages`` < 4 cuts the network after an earlier stage (``layer2`` ends at stride 8 with a
99-pixel receptive field for ResNet-18): a backbone whose context is local, so that context has to
come from the head — the regime of a deep backbone on full-resolution Cityscapes frames.

``multi_grid`` (DeepLabv3 §3.2.1) sets the unit rates of the last stage (block4): unit ``i``
uses ``rate · multi_grid[i]``, e.g. ``(1, 2, 4)`` at output stride 16 gives rates (2, 4, 8).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn
from torchvision import models
from torchvision.models.resnet import BasicBlock, Bottleneck

from ...errors import ConfigError
from .base import Backbone, StagePlan, set_conv
from .weights import build_pretrained

RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101")


def block_convs3x3(block: nn.Module) -> list[nn.Conv2d]:
    """The 3×3 convolutions of a residual unit, in order (the first is the strided one)."""
    if isinstance(block, Bottleneck):
        return [block.conv2]
    if isinstance(block, BasicBlock):
        return [block.conv1, block.conv2]
    raise TypeError(f"not a torchvision residual unit: {type(block).__name__}")


def set_unit_rates(stage: nn.Sequential, stride: int, rates: Sequence[int], first_rate: int) -> None:
    """Set one stage's stride and per-unit rates; ``first_rate`` is the strided conv's rate."""
    for i, unit in enumerate(stage):
        convs = block_convs3x3(unit)
        for j, conv in enumerate(convs):
            set_conv(conv, dilation=first_rate if (i == 0 and j == 0) else rates[i])
        if i == 0:
            set_conv(convs[0], stride=stride)
            if unit.downsample is not None:
                unit.downsample[0].stride = (stride, stride)


class ResNetBackbone(Backbone):
    """Dilated ResNet feature extractor.

    Args:
        arch: ``resnet18`` | ``resnet34`` | ``resnet50`` | ``resnet101``.
        output_stride: 8, 16 or 32.
        multi_grid: unit rates of ``layer4`` (block4), one per unit, or ``None``.
        num_stages: keep ``layer1`` … ``layer{num_stages}`` (1–4); the last one is the head's input.
        pretrained: see :mod:`atrous.models.backbones.weights`.
        frozen: freeze parameters and BatchNorm statistics.

    Features ``layer1`` … ``layer{num_stages}`` (strides 4, 8, 16, 32 at output stride 32).
    Shapes: ``(N, 3, H, W)`` → ``layer4``: ``(N, 2048 or 512, ⌈H/os⌉, ⌈W/os⌉)``.
    """

    input_conv_name = "conv1"

    def __init__(
        self,
        arch: str = "resnet50",
        *,
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = None,
        num_stages: int = 4,
        pretrained: bool | str | None = False,
        frozen: bool = False,
    ) -> None:
        super().__init__()
        if arch not in RESNET_ARCHS:
            raise ConfigError(f"unknown ResNet {arch!r}; choose from {list(RESNET_ARCHS)}")
        net = build_pretrained(arch, getattr(models, arch), pretrained, ignore_prefixes=("fc.",))
        self.arch = arch
        # torchvision's module names, so torchvision (and its DeepLabV3) state dicts map 1:1.
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        if num_stages not in (1, 2, 3, 4):
            raise ConfigError(f"num_stages must be 1, 2, 3 or 4, got {num_stages!r}")
        if multi_grid is not None and num_stages != 4:
            raise ConfigError("multi_grid sets the rates of layer4: it needs num_stages: 4")
        self.num_stages = num_stages
        self.stage_names = [f"layer{i}" for i in range(1, num_stages + 1)]
        for name in self.stage_names:
            setattr(self, name, getattr(net, name))
        if multi_grid is not None:
            multi_grid = tuple(int(r) for r in multi_grid)
            if len(multi_grid) != len(self.layer4) or min(multi_grid) < 1:
                raise ConfigError(
                    f"multi_grid must give one positive unit rate per unit of {arch}'s block4 "
                    f"({len(self.layer4)} units), got {list(multi_grid)}"
                )
        self.multi_grid = multi_grid
        expansion = 4 if isinstance(net.layer1[0], Bottleneck) else 1
        self._channels = [64 * expansion, 128 * expansion, 256 * expansion, 512 * expansion][:num_stages]
        # stem (conv1 + maxpool) 4, layer1 1 (folded into the stem), layer2..4 2 each.
        self.stage_strides = [4, 2, 2, 2][:num_stages]
        self.set_output_stride(output_stride)
        if frozen:
            self.freeze()

    def _apply_plan(self, plans: list[StagePlan]) -> None:
        for name, plan in zip(self.stage_names[1:], plans[1:], strict=True):
            stage = getattr(self, name)
            rates = [plan.dilation] * len(stage)
            first = plan.input_dilation
            if name == "layer4" and self.multi_grid is not None:
                rates = [plan.dilation * g for g in self.multi_grid]
                first = rates[0]
            set_unit_rates(stage, plan.stride, rates, first)
        self._declare_features(self.stage_names, self._channels, plans)

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for name in self.stage_names:
            x = getattr(self, name)(x)
            if keep is None or name in keep:
                out[name] = x
        return out
