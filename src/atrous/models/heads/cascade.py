"""DeepLabv3 cascaded atrous modules (DeepLabv3 §3.2, Fig. 3, Tables 1–3).

block5 … block7 are replicas of ResNet's block4 (three bottleneck units, 2048 → 512 → 2048)
stacked after the backbone. Without atrous convolution each block would halve the resolution
(Fig. 3a, output stride up to 256); once the target output stride is reached, each block
instead doubles the atrous rate (Fig. 3b: block4 rate 2, block5 4, block6 8, block7 16 at
output stride 16). Multi-grid unit rates multiply each unit's rate, as in block4.
Optionally an ASPP module sits on top ("block5 + ASPP", §4.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.resnet import Bottleneck

from ...errors import ConfigError
from ..backbones.base import set_conv
from ..receptive_field import ConvSpec
from .aspp import ASPPHead
from .base import Head, check_inner_head


class Subsample(nn.Module):
    """Parameter-free shortcut: keep every ``stride``-th pixel (1×1 pooling with stride)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, :: self.stride, :: self.stride]


def cascade_plan(num_blocks: int, input_stride: int, input_dilation: int, output_stride: int) -> list[tuple[int, int]]:
    """(stride, rate) of each extra block: stride 2 until ``output_stride``, then doubled rates.

    >>> cascade_plan(3, 16, 2, 16)
    [(1, 4), (1, 8), (1, 16)]
    >>> cascade_plan(3, 32, 1, 256)
    [(2, 1), (2, 1), (2, 1)]
    """
    if output_stride < input_stride:
        raise ConfigError(f"cascade output_stride {output_stride} is below the backbone's {input_stride}")
    if output_stride > input_stride * 2**num_blocks or output_stride & (output_stride - 1):
        reachable = [input_stride * 2**k for k in range(num_blocks + 1)]
        raise ConfigError(f"with {num_blocks} cascaded blocks output_stride must be one of {reachable}, got {output_stride}")
    if output_stride > input_stride and input_dilation != 1:
        raise ConfigError("a cascade that keeps striding needs an undilated backbone (output_stride 32)")
    plan, stride, rate = [], input_stride, input_dilation
    for _ in range(num_blocks):
        if stride < output_stride:
            plan.append((2, rate))
            stride *= 2
        else:
            rate *= 2
            plan.append((1, rate))
    return plan


class CascadeHead(Head):
    """Cascaded block5…block7: ``(N, 2048, h, w)`` → ``(N, 2048 or ASPP out, h/s, w/s)``.

    Args:
        in_channels: backbone channels (2048 for ResNet-50/101).
        num_blocks: extra blocks after block4 (0–3 → 'block4' … 'block7' in Tables 2–3).
        output_stride: the model's output stride (8 … 256, Table 1).
        input_stride, input_dilation: the backbone's output stride and block4 rate (set by the
            model builder from the backbone).
        multi_grid: unit rates (r1, r2, r3), applied in every block (Table 3).
        units: bottleneck units per block (3, as block4).
        aspp: options of an :class:`ASPPHead` on top, or ``None``.
    """

    @classmethod
    def check_options(cls, section: str, options: Mapping[str, Any]) -> None:
        units = options.get("units", 3)
        multi_grid = options.get("multi_grid", (1, 1, 1))
        if len(multi_grid) != units:
            raise ConfigError(f"{section}.multi_grid: needs one unit rate per unit ({units}), got {list(multi_grid)}")
        if options.get("aspp") is not None:
            check_inner_head(f"{section}.aspp", ASPPHead, options["aspp"])

    def __init__(
        self,
        in_channels: int = 2048,
        *,
        num_blocks: int = 3,
        output_stride: int = 16,
        input_stride: int = 16,
        input_dilation: int = 2,
        multi_grid: Sequence[int] = (1, 1, 1),
        units: int = 3,
        aspp: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if len(multi_grid) != units:
            raise ConfigError(f"multi_grid needs one unit rate per unit ({units}), got {list(multi_grid)}")
        self.in_channels = in_channels
        self.multi_grid = tuple(int(g) for g in multi_grid)
        self.num_blocks, self.units = num_blocks, units
        self.blocks = nn.Sequential()
        for _ in range(num_blocks):
            layers = []
            for u in range(units):
                # Input and output widths match, so the shortcut is the identity, subsampled when
                # the block strides (TF-slim's bottleneck, which DeepLabv3 used).
                shortcut = Subsample() if u == 0 else None
                layers.append(Bottleneck(in_channels, in_channels // 4, downsample=shortcut))
            self.blocks.append(nn.Sequential(*layers))
        self.aspp = ASPPHead(in_channels, **aspp) if aspp is not None else None
        self.out_channels = self.aspp.out_channels if self.aspp is not None else in_channels
        self.set_strides(input_stride, input_dilation, output_stride)

    def set_strides(self, input_stride: int, input_dilation: int, output_stride: int) -> None:
        """Lay out strides and rates for a backbone stride/rate and a target output stride."""
        self.plan = cascade_plan(self.num_blocks, input_stride, input_dilation, output_stride)
        for block, (stride, rate) in zip(self.blocks, self.plan, strict=True):
            for u, unit in enumerate(block):
                set_conv(unit.conv2, dilation=rate * self.multi_grid[u], stride=stride if u == 0 else 1)
                if u == 0:
                    unit.downsample.stride = stride
        self.extra_stride = 2 ** sum(s == 2 for s, _ in self.plan)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(x)
        return self.aspp(x) if self.aspp is not None else x

    def conv_path(self) -> list[ConvSpec]:
        path = [
            ConvSpec(3, rate * self.multi_grid[u], stride if u == 0 else 1)
            for stride, rate in self.plan
            for u in range(self.units)
        ]
        return path + (self.aspp.conv_path() if self.aspp is not None else [])

    @property
    def global_context(self) -> bool:  # type: ignore[override]
        return self.aspp is not None and self.aspp.global_context

    @classmethod
    def backbone_arguments(cls, backbone: Any) -> dict[str, Any]:
        """The cascade continues the backbone: it needs its stride and block4 rate."""
        return {"in_channels": backbone.out_channels, "input_stride": backbone.output_stride,
                "input_dilation": backbone.last_dilation}

    def backbone_output_stride(self, output_stride: int) -> int:
        """Up to 32 the backbone strides (or dilates); beyond it the cascaded blocks stride."""
        return min(output_stride, 32)

    def check_output_stride(self, old: int, new: int) -> None:
        if self.aspp is not None:
            self.aspp.check_output_stride(old, new)

    def set_output_stride(self, old: int, new: int, backbone: Any) -> None:
        """Re-plan the blocks' strides and rates (Fig. 3) for the re-dilated backbone; ASPP on
        top scales its rates."""
        self.set_strides(backbone.output_stride, backbone.last_dilation, new)
        if self.aspp is not None:
            self.aspp.set_output_stride(old, new, backbone)
