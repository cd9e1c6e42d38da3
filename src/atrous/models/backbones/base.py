"""What every backbone shares: declared feature maps, one output-stride rule, freezing.

A backbone maps an image batch ``(N, 3, H, W)`` to an ordered dict of feature maps. Each
map is declared in :attr:`Backbone.feature_info` (name, channels, stride) and a test checks
the declaration against measured outputs for every output stride.

The output-stride rule is the one of DeepLabv3 §3.1 and the DenseASPP paper: walk the
network's downsampling stages; once the target stride is reached, every further stride
becomes dilation (the stage keeps stride 1 and its convolutions are dilated by the stride
that was removed).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass

import torch
from torch import nn

from ...errors import ConfigError

VALID_OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class FeatureInfo:
    """One feature map a backbone returns: its key, channel count and stride w.r.t. the input."""

    name: str
    channels: int
    stride: int


@dataclass(frozen=True)
class StagePlan:
    """How one downsampling stage runs at a given output stride.

    ``stride`` is the stride the stage keeps (its nominal stride, or 1 once the target is
    reached); ``input_dilation`` is the dilation in force before the stage and ``dilation``
    the one its convolutions use after the (possibly removed) stride; ``output_stride`` is the
    stride of the stage's output w.r.t. the input image.
    """

    stride: int
    input_dilation: int
    dilation: int
    output_stride: int


def plan_stages(stage_strides: list[int], output_stride: int) -> list[StagePlan]:
    """Apply the output-stride rule to a list of nominal stage strides.

    >>> [p.dilation for p in plan_stages([4, 2, 2, 2], 8)]
    [1, 1, 2, 4]
    """
    check_output_stride(output_stride)
    current, dilation, plans = 1, 1, []
    for nominal in stage_strides:
        before = dilation
        if current * nominal > output_stride:
            stride, dilation = 1, dilation * nominal
        else:
            stride, current = nominal, current * nominal
        plans.append(StagePlan(stride, before, dilation, current))
    if current != output_stride:
        raise ConfigError(
            f"output_stride {output_stride} is beyond this backbone's {len(stage_strides)} stages, whose strides "
            f"reach {current} at most; use an output stride of at most {current} (or more stages)"
        )
    return plans


def check_output_stride(output_stride: int) -> None:
    if output_stride not in VALID_OUTPUT_STRIDES:
        raise ConfigError(
            f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride!r}. "
            "Use 8 for the densest features (DenseASPP, DeepLabv3 fine-tuning), 16 for DeepLabv3 "
            "training, 32 for the plain classification network."
        )


def set_conv(conv: nn.Conv2d, *, stride: int | None = None, dilation: int | None = None) -> None:
    """Set a square conv's stride and/or dilation, keeping 'same' padding for odd kernels."""
    if stride is not None:
        conv.stride = (stride, stride)
    if dilation is not None:
        conv.dilation = (dilation, dilation)
        k = conv.kernel_size[0]
        if k % 2 == 1:
            conv.padding = ((k - 1) // 2 * dilation, (k - 1) // 2 * dilation)


def adapt_input_conv(in_channels: int, weight: torch.Tensor) -> torch.Tensor:
    """RGB first-convolution weights ``(O, 3, k, k)`` for ``in_channels`` inputs, as timm's
    ``adapt_input_conv`` does it: one channel takes the sum over RGB (a grey image then gives the
    RGB network's response to that grey in all three channels); more channels repeat R, G, B, R, …
    and scale by ``3 / in_channels``, keeping the response to a constant image."""
    if weight.shape[1] != 3:
        raise ConfigError(f"model.in_channels: can only adapt a 3-channel first convolution, this one has {weight.shape[1]}")
    if in_channels == 3:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeated = weight.repeat(1, math.ceil(in_channels / 3), 1, 1)[:, :in_channels]
    return repeated * (3 / in_channels)


class Backbone(nn.Module):
    """Base class: subclasses set ``feature_info`` and implement ``_features`` and ``_apply_plan``.

    Args:
        output_stride: 8, 16 or 32 (see :func:`plan_stages`).
        frozen: freeze all parameters and keep BatchNorm in eval mode, as the report trained its
            heads; parameter counts of the report's Table 1 are then the trainable parameters.
    """

    feature_info: list[FeatureInfo]
    # the first convolution, the one that reads the image (a submodule path); None: reads RGB only
    input_conv_name: str | None = None

    def __init__(self) -> None:
        super().__init__()
        self.frozen = False

    # -- input channels -------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Channels of the input image (3 unless :meth:`set_in_channels` changed it)."""
        return 3 if self.input_conv_name is None else self.get_submodule(self.input_conv_name).in_channels

    def set_in_channels(self, in_channels: int) -> None:
        """Read ``in_channels``-channel images (grey, RGB-NIR, multispectral): the first
        convolution is replaced by one whose weights :func:`adapt_input_conv` derives from the
        current (e.g. ImageNet) ones."""
        if in_channels < 1:
            raise ConfigError(f"model.in_channels: must be >= 1, got {in_channels!r}")
        if self.input_conv_name is None:
            if in_channels == 3:
                return
            raise ConfigError(f"model.in_channels: {type(self).__name__} reads RGB only (it declares no input_conv_name)")
        old: nn.Conv2d = self.get_submodule(self.input_conv_name)
        if in_channels == old.in_channels:
            return
        new = type(old)(
            in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
            dilation=old.dilation, groups=old.groups, bias=old.bias is not None, padding_mode=old.padding_mode,
        )
        with torch.no_grad():
            new.weight.copy_(adapt_input_conv(in_channels, old.weight))
            if old.bias is not None:
                new.bias.copy_(old.bias)
        new.requires_grad_(old.weight.requires_grad)
        self.set_submodule(self.input_conv_name, new)

    # -- output stride --------------------------------------------------------------------
    @property
    def output_stride(self) -> int:
        """Stride of the last feature map w.r.t. the input image."""
        return self.feature_info[-1].stride

    @property
    def out_channels(self) -> int:
        """Channels of the last feature map (the head's input)."""
        return self.feature_info[-1].channels

    @property
    def last_dilation(self) -> int:
        """Dilation of the last stage's convolutions (DeepLabv3 block4 rate before multi-grid)."""
        return self._last_dilation

    def set_output_stride(self, output_stride: int) -> None:
        """Re-dilate the network in place; weights are untouched (DeepLabv3 §4.1: train at 16, infer at 8)."""
        check_output_stride(output_stride)
        self._apply_plan(plan_stages(self.stage_strides, output_stride))

    stage_strides: list[int]

    def _apply_plan(self, plans: list[StagePlan]) -> None:  # pragma: no cover - abstract
        """Set strides/dilations of the stages, then call :meth:`_declare_features`."""
        raise NotImplementedError

    def _declare_features(self, names: list[str], channels: list[int], plans: list[StagePlan]) -> None:
        """Record ``feature_info`` (one map per stage, at the stage's output stride)."""
        self._last_dilation = plans[-1].dilation
        self.feature_info = [
            FeatureInfo(n, c, p.output_stride) for n, c, p in zip(names, channels, plans, strict=True)
        ]

    # -- freezing -------------------------------------------------------------------------
    def freeze(self) -> None:
        """Freeze parameters and BatchNorm statistics (BN stays in eval mode under ``.train()``)."""
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> Backbone:
        super().train(mode)
        if self.frozen:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # -- forward --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, features: Collection[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        """``(N, in_channels, H, W)`` → ordered dict of feature maps, keys and order as ``feature_info``.

        ``features`` names the maps to return (default: all). A map not asked for is not held
        while the later stages run: the segmentor's forward asks for the last map only, so its
        activation memory is that of a plain chain of stages (holding every stage's output
        would raise DenseASPP-121's peak inference activation memory by 77%, ResNet-50's by 21%).
        """
        if features is None:
            return self._features(x)
        keep = frozenset(features)
        unknown = sorted(keep - {f.name for f in self.feature_info})
        if unknown:
            raise ValueError(f"unknown feature(s) {unknown}; this backbone has {[f.name for f in self.feature_info]}")
        return self._features(x, keep=keep)

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        """All feature maps, or only those named in ``keep`` (not holding the others)."""
        raise NotImplementedError  # pragma: no cover
