"""DenseASPP head (Yang et al., CVPR 2018; report §4): a cascade of atrous layers, densely connected.

Layer ``l`` sees the head input concatenated with the outputs of all lower layers
(``c_l = c_0 + n·(l − 1)`` channels, report §4.2) and adds ``n = growth_channels`` new ones;
rates grow layer by layer. One layer, pre-activation as in the report and the official code::

    BN-ReLU → 1×1 conv (bottleneck) → BN-ReLU → 3×3 conv, rate d → [BN] → dropout

The report's Table 1 variations are arguments: the bottleneck is optional (Table 1 #1–#3 have
none) and ``output_norm`` adds the BN on each layer's output (#5). The official DenseASPP121/161/
169/201 (DeepMotionAIResearch/DenseASPP, ``models/DenseASPP.py``) is one variant,
``official=True``; everything in which its layers differ from the paper's is
:data:`OFFICIAL_LAYERS` below. Its first block's in-place ReLU, which also rectifies the backbone
output that is then concatenated, belongs to the backbone: ``official_layout`` of
:class:`~atrous.models.backbones.DenseNetBackbone` ends in that ReLU (``relu5``).

Block removal (report §5.2, Fig. 4) is an analysis, not a model feature:
:func:`atrous.analysis.block_removal.removed_top_layers` zeroes the top layers' outputs with
forward hooks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..receptive_field import ConvSpec, PathFields, chain_fields, dense_path_fields
from .base import Head, check_atrous_rates


@dataclass(frozen=True)
class LayerSettings:
    """How the atrous layers are built and joined, beyond their widths, rates and dropout."""

    first_input_norm: bool  # the first layer starts with BN (later layers always do)
    conv_bias: bool  # biases in the 1×1 and 3×3 convolutions
    bn_momentum: float  # of every BatchNorm of the head
    new_first: bool  # concatenate ``[new, x]`` instead of ``[x, new]``


# The paper's (and the report's) layer: torchvision-style BN defaults, bias-free convolutions, input first.
PAPER_LAYERS = LayerSettings(first_input_norm=True, conv_bias=False, bn_momentum=0.1, new_first=False)
# The official code, models/DenseASPP.py:
OFFICIAL_LAYERS = LayerSettings(
    first_input_norm=False,  # DenseASPP.__init__: ASPP_3 = _DenseAsppBlock(..., bn_start=False)
    conv_bias=True,  # _DenseAsppBlock: nn.Conv2d(...) with PyTorch's default bias=True
    bn_momentum=0.0003,  # _DenseAsppBlock: bn(num_features, momentum=0.0003)
    new_first=True,  # DenseASPP.forward: feature = torch.cat((aspp3, feature), dim=1)
)
_OFFICIAL = "`official: true` (the official DenseASPP's layers: no BN before the first, conv biases, BN momentum 0.0003, new features first)"


class DenseASPPLayer(nn.Module):
    """One atrous layer of DenseASPP: ``(N, C_in, h, w)`` → ``(N, growth_channels, h, w)``.

    ``norm1`` (input; Identity without ``input_norm``) → ReLU → ``conv1`` (1×1; Identity without
    a bottleneck) → ``norm2`` → ReLU → ``conv2`` (3×3 atrous) → ``norm3`` (Identity without
    ``output_norm``) → dropout.
    """

    def __init__(
        self,
        in_channels: int,
        growth_channels: int,
        rate: int,
        *,
        bottleneck_channels: int | None = None,
        input_norm: bool = True,
        output_norm: bool = False,
        dropout: float = 0.0,
        settings: LayerSettings = PAPER_LAYERS,
    ) -> None:
        super().__init__()
        self.rate, self.dropout = rate, dropout

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, momentum=settings.bn_momentum)

        mid = bottleneck_channels or in_channels
        bias = settings.conv_bias
        identity = nn.Identity()
        self.norm1 = bn(in_channels) if input_norm else identity
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=bias) if bottleneck_channels else identity
        self.norm2 = bn(mid) if bottleneck_channels else identity
        self.conv2 = nn.Conv2d(mid, growth_channels, 3, padding=rate, dilation=rate, bias=bias)
        self.norm3 = bn(growth_channels) if output_norm else identity
        self.has_bottleneck = bottleneck_channels is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(x))
        if self.has_bottleneck:
            x = F.relu(self.norm2(self.conv1(x)))
        x = self.norm3(self.conv2(x))
        if self.dropout > 0:
            x = F.dropout2d(x, self.dropout, self.training)
        return x


class DenseASPPHead(Head):
    """DenseASPP: ``(N, c_0, h, w)`` → ``(N, c_0 + L·growth_channels, h, w)``.

    Args:
        in_channels: ``c_0``, channels of the backbone feature map.
        atrous_rates: one rate per layer, low to high (DenseASPP(3, 6, 12, 18, 24)).
        growth_channels: ``n``, new channels per layer (report: 64 = c_0/16; paper: c_0/8).
        bottleneck_channels: width of the 1×1 conv before each atrous conv, ``None`` for none
            (report: 256 = c_0/4; paper: c_0/2).
        output_norm: BatchNorm on each layer's output (report Table 1 #5, see its config).
        dropout: 2-D dropout on each layer's output (official code: 0.1).
        official: the official code's layers (:data:`OFFICIAL_LAYERS`) instead of the paper's
            (:data:`PAPER_LAYERS`); its backbone is ``official_layout`` (module docstring).
    """

    # Options of earlier versions → what replaces them (the builder's error names it).
    removed_options: ClassVar[Mapping[str, str]] = {
        "preactivation": "DenseASPP layers are pre-activation (BN-ReLU-conv) only, as in the paper and the official code; remove the key",
        **{key: f"use {_OFFICIAL} instead" for key in ("first_input_norm", "conv_bias", "concat_order", "bn_momentum")},
        "input_relu": "the backbone's `official_layout: true` ends in the official code's ReLU (relu5); remove the key",
    }

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (3, 6, 12, 18, 24),
        *,
        growth_channels: int = 64,
        bottleneck_channels: int | None = 256,
        output_norm: bool = False,
        dropout: float = 0.0,
        official: bool = False,
    ) -> None:
        super().__init__()
        check_atrous_rates("atrous_rates", atrous_rates)
        self.in_channels = in_channels
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        self.growth_channels = growth_channels
        self.settings = OFFICIAL_LAYERS if official else PAPER_LAYERS
        self.layers = nn.ModuleList(
            DenseASPPLayer(
                in_channels + i * growth_channels,
                growth_channels,
                rate,
                bottleneck_channels=bottleneck_channels,
                input_norm=self.settings.first_input_norm or i > 0,
                output_norm=output_norm,
                dropout=dropout,
                settings=self.settings,
            )
            for i, rate in enumerate(self.atrous_rates)
        )
        self.out_channels = in_channels + len(self.layers) * growth_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            new = layer(x)
            x = torch.cat([new, x] if self.settings.new_first else [x, new], dim=1)
        return x

    def conv_path(self) -> list[ConvSpec]:
        """Longest path through the head: every atrous layer in turn (the report's R_max)."""
        return [ConvSpec(3, r) for r in self.atrous_rates]

    def path_fields(self) -> PathFields:
        """Every non-empty subset of layers is a path (report §4.1): ``2^L − 1`` paths, against the
        ``L`` fields of the same rates in parallel."""
        return PathFields(dense_path_fields(self.atrous_rates), chain_fields(self.conv_path()).parallel, dense=True)

    def removable_layers(self) -> list[tuple[nn.Module, ConvSpec]]:
        """Every atrous layer: a removed layer's zeros keep the concatenation's width (report Fig. 4)."""
        return list(zip(self.layers, self.conv_path(), strict=True))
