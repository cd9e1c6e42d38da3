"""DeepLabv3 Atrous Spatial Pyramid Pooling with image-level features (DeepLabv3 §3.3, Fig. 5).

(a) one 1×1 conv and three 3×3 atrous convs, rates (6, 12, 18) at output stride 16 (doubled at
8), all 256 filters + BN + ReLU, and (b) image pooling: global average pool → 1×1 conv (256)
+ BN + ReLU → bilinear upsampling. Branches are concatenated and projected by a 1×1 conv (256)
+ BN + ReLU before the classifier. Rates, image pooling on/off (Table 5) and torchvision's extra
3×3 conv (its ``DeepLabHead``) are arguments. Module names follow torchvision's ``ASPP``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..receptive_field import ConvSpec, PathFields, layer_receptive_field
from .base import Head, check_atrous_rates


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, rate: int = 1, momentum: float = 0.1) -> nn.Sequential:
    padding = rate * (kernel - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=rate, bias=False),
        nn.BatchNorm2d(cout, momentum=momentum),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Sequential):
    """Image-level features: ``(N, C, h, w)`` → ``(N, out, h, w)`` constant over space.

    With ``norm=False`` the 1×1 map has no BatchNorm (detectron2 drops it: BN over a 1×1 map
    needs a batch of more than one image in training).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: bool = True, momentum: float = 0.1) -> None:
        layers: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels, momentum=momentum))
        layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        for module in self:
            x = module(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPPHead(Head):
    """ASPP: ``(N, in_channels, h, w)`` → ``(N, out_channels, h, w)``.

    Args:
        in_channels: channels of the backbone (or cascade) feature map.
        atrous_rates: rates of the 3×3 branches at this model's output stride
            ((6, 12, 18) at 16, (12, 24, 36) at 8; (6, 12, 18, 24) in Table 5).
        out_channels: filters of every branch and of the projection (256).
        image_pooling: add the image-level branch (Table 5, last row).
        pooling_norm: BatchNorm in the image-level branch (paper, torchvision: yes).
        dropout: dropout after the projection (torchvision: 0.5; TF DeepLab: 0.1).
        refine_conv: torchvision's extra 3×3 conv-BN-ReLU after the projection.
        bn_momentum: BatchNorm momentum (the paper's decay 0.9997 ≈ momentum 0.0003).
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int] = (6, 12, 18),
        *,
        out_channels: int = 256,
        image_pooling: bool = True,
        pooling_norm: bool = True,
        dropout: float = 0.1,
        refine_conv: bool = False,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        check_atrous_rates("atrous_rates", atrous_rates)
        self.in_channels = in_channels
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        branches: list[nn.Module] = [conv_bn_relu(in_channels, out_channels, 1, momentum=bn_momentum)]
        branches += [conv_bn_relu(in_channels, out_channels, 3, r, bn_momentum) for r in self.atrous_rates]
        if image_pooling:
            branches.append(ASPPPooling(in_channels, out_channels, pooling_norm, bn_momentum))
        self.image_pooling = image_pooling
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            nn.Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.refine = conv_bn_relu(out_channels, out_channels, 3, momentum=bn_momentum) if refine_conv else nn.Identity()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.project(torch.cat([branch(x) for branch in self.convs], dim=1)))

    def set_rates(self, atrous_rates: Sequence[int]) -> None:
        """Change the branches' rates in place (output-stride switch at inference)."""
        if len(atrous_rates) != len(self.atrous_rates):
            raise ConfigError(f"need {len(self.atrous_rates)} rates, got {list(atrous_rates)}")
        self.atrous_rates = tuple(int(r) for r in atrous_rates)
        for branch, rate in zip(self.convs[1 : 1 + len(atrous_rates)], self.atrous_rates, strict=True):
            branch[0].dilation, branch[0].padding = (rate, rate), (rate, rate)

    def _scaled_rates(self, old: int, new: int) -> list[int]:
        """Rates at output stride ``new`` that cover the same image area as at ``old``."""
        scaled = [r * old / new for r in self.atrous_rates]
        if any(r != int(r) or r < 1 for r in scaled):
            raise ConfigError(f"ASPP rates {self.atrous_rates} do not scale to output stride {new}")
        return [int(r) for r in scaled]

    def check_output_stride(self, old: int, new: int) -> None:
        self._scaled_rates(old, new)

    def set_output_stride(self, old: int, new: int, backbone: Any) -> None:
        """Rates scale with the stride: (6, 12, 18) at 16 ↔ (12, 24, 36) at 8 (DeepLabv3 §3.3)."""
        self.set_rates(self._scaled_rates(old, new))

    def conv_path(self) -> list[ConvSpec]:
        """Widest conv branch, then the 3×3 refine conv if any (image pooling is global)."""
        path = [ConvSpec(3, max(self.atrous_rates))]
        if isinstance(self.refine, nn.Sequential):
            path.append(ConvSpec(3))
        return path

    def path_fields(self) -> PathFields:
        """Parallel branches: the 1×1 and one 3×3 per rate, one path each (image pooling is
        global, the refine conv shared)."""
        parallel = tuple(sorted({1, *(layer_receptive_field(3, r) for r in self.atrous_rates)}))
        return PathFields(dict.fromkeys(parallel, 1), parallel)

    @property
    def global_context(self) -> bool:  # type: ignore[override]
        return self.image_pooling
