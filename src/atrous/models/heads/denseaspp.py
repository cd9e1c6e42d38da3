"""DenseASPP head (Yang et al., CVPR 2018; seed §4): a cascade of atrous layers, densely connected.

Layer ``l`` sees the head input concatenated with the outputs of all lower layers
(``c_l = c_0 + n·(l − 1)`` channels, seed §4.2) and adds ``n = growth_channels`` new ones;
rates grow layer by layer. One layer, pre-activation as in the seed and the official code::

    [BN-ReLU] → 1×1 conv (bottleneck) → BN-ReLU → 3×3 conv, rate d → [BN] → dropout

Every variation the seed's Table 1 and the official DenseASPP121/161/169/201 need is an
argument: the bottleneck is optional (Table 1 #1–#3 have none), the first layer of the
official code has no leading BN (its backbone ends in ``norm5``), convolutions have biases in
the official code, and the official code concatenates the new features *before* the old ones.

Block removal (seed §5.2, Fig. 4) is an analysis, not a model feature:
:func:`atrous.analysis.block_removal.removed_top_layers` zeroes the top layers' outputs with
forward hooks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..receptive_field import ConvSpec
from .base import Head

CONCAT_ORDERS = ("input_first", "new_first")


class DenseASPPLayer(nn.Module):
    """One atrous layer of DenseASPP: ``(N, C_in, h, w)`` → ``(N, growth_channels, h, w)``.

    Module names are chosen once: pre-activation ``norm1`` (input) → ``conv1`` (1×1) →
    ``norm2`` → ``conv2`` (3×3 atrous) → ``norm3`` (optional, output); post-activation
    ``conv1`` → ``norm1`` → ``conv2`` → ``norm2``.
    """

    def __init__(
        self,
        in_channels: int,
        growth_channels: int,
        rate: int,
        *,
        bottleneck_channels: int | None = None,
        preactivation: bool = True,
        input_norm: bool = True,
        output_norm: bool = False,
        conv_bias: bool = False,
        dropout: float = 0.0,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        self.rate, self.preactivation, self.dropout = rate, preactivation, dropout

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, momentum=bn_momentum)

        mid = bottleneck_channels or in_channels
        identity = nn.Identity()
        if preactivation:
            self.norm1 = bn(in_channels) if input_norm else identity
            self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=conv_bias) if bottleneck_channels else identity
            self.norm2 = bn(mid) if bottleneck_channels else identity
            self.conv2 = nn.Conv2d(mid, growth_channels, 3, padding=rate, dilation=rate, bias=conv_bias)
            self.norm3 = bn(growth_channels) if output_norm else identity
        else:
            self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=conv_bias) if bottleneck_channels else identity
            self.norm1 = bn(mid) if bottleneck_channels else identity
            self.conv2 = nn.Conv2d(mid, growth_channels, 3, padding=rate, dilation=rate, bias=conv_bias)
            self.norm2 = bn(growth_channels)
        self.has_bottleneck = bottleneck_channels is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            x = F.relu(self.norm1(x))
            if self.has_bottleneck:
                x = F.relu(self.norm2(self.conv1(x)))
            x = self.norm3(self.conv2(x))
        else:
            if self.has_bottleneck:
                x = F.relu(self.norm1(self.conv1(x)))
            x = F.relu(self.norm2(self.conv2(x)))
        if self.dropout > 0:
            x = F.dropout2d(x, self.dropout, self.training)
        return x


class DenseASPPHead(Head):
    """DenseASPP: ``(N, c_0, h, w)`` → ``(N, c_0 + L·growth_channels, h, w)``.

    Args:
        in_channels: ``c_0``, channels of the backbone feature map.
        atrous_rates: one rate per layer, low to high (DenseASPP(3, 6, 12, 18, 24)).
        growth_channels: ``n``, new channels per layer (seed: 64 = c_0/16; paper: c_0/8).
        bottleneck_channels: width of the 1×1 conv before each atrous conv, ``None`` for none
            (seed: 256 = c_0/4; paper: c_0/2).
        preactivation: BN-ReLU-conv (seed, official) or conv-BN-ReLU (common re-implementations).
        first_input_norm: whether the first layer starts with BN (official code: no).
        output_norm: BatchNorm on each layer's output (seed Table 1 #5, see its config).
        conv_bias: biases in the 1×1 and 3×3 convolutions (official code: yes).
        dropout: 2-D dropout on each layer's output (official code: 0.1).
        concat_order: ``input_first`` (``[x, new]``) or ``new_first`` (official: ``[new, x]``).
        bn_momentum: BatchNorm momentum (official code: 0.0003).
        input_relu: apply ReLU to the head input, so that the concatenated input features are
            rectified too. The official code does this implicitly: its first layer's
            ``nn.ReLU(inplace=True)`` overwrites the backbone output that is then concatenated.
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (3, 6, 12, 18, 24),
        *,
        growth_channels: int = 64,
        bottleneck_channels: int | None = 256,
        preactivation: bool = True,
        first_input_norm: bool = True,
        output_norm: bool = False,
        conv_bias: bool = False,
        dropout: float = 0.0,
        concat_order: str = "input_first",
        bn_momentum: float = 0.1,
        input_relu: bool = False,
    ) -> None:
        super().__init__()
        if concat_order not in CONCAT_ORDERS:
            raise ConfigError(f"concat_order must be one of {CONCAT_ORDERS}, got {concat_order!r}")
        if not atrous_rates or min(atrous_rates) < 1:
            raise ConfigError(f"atrous_rates must be positive integers, got {list(atrous_rates)}")
        self.in_channels = in_channels
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.growth_channels = growth_channels
        self.concat_order = concat_order
        self.input_relu = input_relu
        self.layers = nn.ModuleList(
            DenseASPPLayer(
                in_channels + i * growth_channels,
                growth_channels,
                rate,
                bottleneck_channels=bottleneck_channels,
                preactivation=preactivation,
                input_norm=first_input_norm or i > 0,
                output_norm=output_norm,
                conv_bias=conv_bias,
                dropout=dropout,
                bn_momentum=bn_momentum,
            )
            for i, rate in enumerate(self.atrous_rates)
        )
        self.out_channels = in_channels + len(self.layers) * growth_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_relu:
            x = F.relu(x)
        for layer in self.layers:
            new = layer(x)
            x = torch.cat([x, new] if self.concat_order == "input_first" else [new, x], dim=1)
        return x

    def conv_path(self) -> list[ConvSpec]:
        """Longest path through the head: every atrous layer in turn (seed's R_max)."""
        return [ConvSpec(3, r) for r in self.atrous_rates]

    def path_fields(self) -> PathFields:  # noqa: F821 (imported in the method)
        """Every non-empty subset of layers is a path (seed §4.1): ``2^L − 1`` paths, against the
        ``L`` fields of the same rates in parallel."""
        from ..receptive_field import PathFields, chain_fields, dense_path_fields

        return PathFields(dense_path_fields(self.atrous_rates), chain_fields(self.conv_path()).parallel, dense=True)

    def removable_layers(self) -> list[tuple[nn.Module, ConvSpec]]:
        """Every atrous layer: a removed layer's zeros keep the concatenation's width (seed Fig. 4)."""
        return list(zip(self.layers, self.conv_path(), strict=True))
