"""ConvNeXt-Tiny/Small/Base dilated to output stride 8/16/32.

ConvNeXt downsamples with 2×2, stride-2 convolutions (no padding). Turning such a layer into
a stride-1 layer needs care that generic "stride → dilation" patches miss: the even kernel has
no centred 'same' padding. Output pixel ``j`` of the strided layer combines inputs ``2j`` and
``2j+1``; the stride-1 replacement must keep that alignment, so it uses the rate in force
before the stage and pads only on the right and bottom (``rate·(k−1)`` pixels). All later 7×7
depthwise convolutions are dilated by the removed stride. The dilated network, sampled every
``s`` pixels, then equals the strided network exactly (tests check this).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models

from ...errors import ConfigError
from .base import Backbone, StagePlan, set_conv
from .weights import build_pretrained

CONVNEXT_ARCHS = ("convnext_tiny", "convnext_small", "convnext_base")


class DownsampleConv2d(nn.Conv2d):
    """A ConvNeXt downsampling conv that can run at stride 1 with right/bottom padding.

    Same parameters (and state-dict keys) as the ``nn.Conv2d`` it replaces.
    """

    right_pad: int = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.right_pad:
            x = F.pad(x, (0, self.right_pad, 0, self.right_pad))
        return super().forward(x)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> DownsampleConv2d:
        new = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            bias=conv.bias is not None,
        )
        new.load_state_dict(conv.state_dict())
        return new


class ConvNeXtBackbone(Backbone):
    """Dilated ConvNeXt feature extractor.

    Args:
        arch: ``convnext_tiny`` | ``convnext_small`` | ``convnext_base``.
        output_stride: 8, 16 or 32.
        pretrained: see :mod:`atrous.models.backbones.weights`.
        frozen: freeze parameters.
        stochastic_depth_prob: drop-path rate; ``None`` keeps torchvision's default
            (0.1 / 0.4 / 0.5).

    Features ``stage1`` … ``stage4`` at strides 4, 8, 16, 32 (output stride 32).
    Shapes: ``(N, 3, H, W)`` → ``stage4``: ``(N, 768 or 1024, ⌈H/os⌉, ⌈W/os⌉)``.
    """

    input_conv_name = "features.0.0"

    def __init__(
        self,
        arch: str = "convnext_tiny",
        *,
        output_stride: int = 8,
        pretrained: bool | str | None = False,
        frozen: bool = False,
        stochastic_depth_prob: float | None = None,
    ) -> None:
        super().__init__()
        if arch not in CONVNEXT_ARCHS:
            raise ConfigError(f"unknown ConvNeXt {arch!r}; choose from {list(CONVNEXT_ARCHS)}")
        extra = {} if stochastic_depth_prob is None else {"stochastic_depth_prob": stochastic_depth_prob}
        net = build_pretrained(arch, getattr(models, arch), pretrained, ignore_prefixes=("classifier.",), **extra)
        self.arch = arch
        self.features = net.features
        for index in (2, 4, 6):
            self.features[index][1] = DownsampleConv2d.from_conv(self.features[index][1])
        self._channels = [self.features[i][0].block[0].in_channels for i in (1, 3, 5, 7)]
        self.stage_strides = [4, 2, 2, 2]
        self.set_output_stride(output_stride)
        if frozen:
            self.freeze()

    def _apply_plan(self, plans: list[StagePlan]) -> None:
        for stage, plan in zip((3, 5, 7), plans[1:], strict=True):
            down: DownsampleConv2d = self.features[stage - 1][1]
            down.stride = (plan.stride, plan.stride)
            if plan.stride == 1:
                down.dilation = (plan.input_dilation, plan.input_dilation)
                down.right_pad = plan.input_dilation * (down.kernel_size[0] - 1)
            else:
                down.dilation, down.right_pad = (1, 1), 0
            for block in self.features[stage]:
                set_conv(block.block[0], dilation=plan.dilation)
        self._declare_features([f"stage{i}" for i in range(1, 5)], self._channels, plans)

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, module in enumerate(self.features):
            x = module(x)
            if index % 2 == 1 and (keep is None or f"stage{index // 2 + 1}" in keep):
                out[f"stage{index // 2 + 1}"] = x
        return out
