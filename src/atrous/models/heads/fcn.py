"""Heads without multi-scale context: the FCN baseline and the auxiliary head."""

from __future__ import annotations

import torch
from torch import nn

from ..receptive_field import ConvSpec
from .base import Head


class FCNHead(Head):
    """No context module: the classifier (a 1×1 conv, added by the segmentor) sits directly on
    the backbone features. ``(N, C, h, w)`` → the same tensor. The no-context baseline of the
    FCN vs ASPP vs DenseASPP comparison.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.in_channels = self.out_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def conv_path(self) -> list[ConvSpec]:
        return []


class AuxHead(nn.Sequential):
    """Auxiliary classifier on an intermediate feature map (PSPNet/torchvision ``FCNHead``).

    ``(N, in_channels, h, w)`` → ``(N, num_classes, h, w)``: 3×3 conv-BN-ReLU, dropout, 1×1 conv.
    Used for an extra training loss only; inference ignores it.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int | None = None, dropout: float = 0.1) -> None:
        channels = channels or in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(channels, num_classes, 1),
        )

    @property
    def classifier(self) -> nn.Conv2d:
        """The last layer: one output channel per class."""
        return self[-1]
