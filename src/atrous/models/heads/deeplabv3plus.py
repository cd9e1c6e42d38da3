"""DeepLabV3+ (Chen et al., ECCV 2018, §3.2 and Fig. 2): a decoder over any context head.

The encoder's features (output stride 16 or 8) go through a context head — ASPP with image
pooling as in the paper, or DenseASPP ("DenseASPP+") — are upsampled bilinearly to the stride-4
low-level map of the backbone, concatenated with that map reduced to 48 channels by a 1×1
convolution (+ BN + ReLU; §4.1: 48 channels work best), and refined by two 3×3 convolutions of
256 filters (+ BN + ReLU; Table 2). The classifier and the final ×4 bilinear upsampling are the
segmentor's. The paper uses depthwise-separable convolutions with its Xception encoder; like its
ResNet-101 experiments, this decoder uses plain ones.

Receptive field (:meth:`DeepLabV3PlusHead.conv_path`): the context head's path in encoder
pixels, then the two 3×3 convolutions at stride 4, which span ``4·4 / output stride`` encoder
pixels (1 at output stride 16, 2 at 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ..receptive_field import ConvSpec, PathFields
from .aspp import conv_bn_relu
from .base import Head, check_inner_head

if TYPE_CHECKING:
    from ..backbones import Backbone

LOW_LEVEL_STRIDE = 4
CONTEXTS = ("aspp", "denseaspp", "fcn")  # context heads that keep the resolution and take only in_channels


class DeepLabV3PlusHead(Head):
    """Context head + DeepLabV3+ decoder: ``(N, in_channels, h, w)`` and the low-level map
    ``(N, low_level_channels, 4h/os·…)`` → ``(N, channels, H/4, W/4)``.

    Args:
        in_channels: channels of the backbone's last map (derived from the backbone).
        low_level_channels: channels of its stride-4 map (derived).
        encoder_stride: the backbone's output stride (derived; follows output-stride switches).
        context: the context head's config (``{name: aspp, atrous_rates: [6, 12, 18]}``,
            ``{name: denseaspp, ...}``); ``in_channels`` comes from the backbone.
        reduced_channels: the 1×1 reduction of the low-level map (48).
        channels: filters of the two 3×3 refinement convolutions (256).
        bn_momentum: BatchNorm momentum of the decoder.
    """

    low_level_stride = LOW_LEVEL_STRIDE

    @classmethod
    def check_options(cls, section: str, options: Mapping[str, Any]) -> None:
        from . import HEADS  # the registry imports this module

        context = options.get("context") or {"name": "aspp"}
        if not isinstance(context, Mapping) or context.get("name") not in CONTEXTS:
            name = context.get("name") if isinstance(context, Mapping) else context
            raise ConfigError(f"{section}.context.name must be one of {list(CONTEXTS)}, got {name!r}")
        inner = {k: v for k, v in context.items() if k != "name"}
        check_inner_head(f"{section}.context ({context['name']})", HEADS[context["name"]], inner)

    def __init__(
        self,
        in_channels: int,
        low_level_channels: int,
        encoder_stride: int,
        *,
        context: Mapping[str, Any] | None = None,
        reduced_channels: int = 48,
        channels: int = 256,
        bn_momentum: float = 0.1,
    ) -> None:
        super().__init__()
        from . import HEADS  # the registry imports this module

        context = dict(context or {"name": "aspp"})
        name = context.pop("name", None)
        if name not in CONTEXTS:
            raise ConfigError(f"deeplabv3plus.context.name must be one of {list(CONTEXTS)}, got {name!r}")
        self.context = HEADS[name](in_channels=in_channels, **context)
        self.in_channels, self.encoder_stride = in_channels, encoder_stride
        self.reduce = conv_bn_relu(low_level_channels, reduced_channels, 1, momentum=bn_momentum)
        self.refine = nn.Sequential(
            conv_bn_relu(self.context.out_channels + reduced_channels, channels, 3, momentum=bn_momentum),
            conv_bn_relu(channels, channels, 3, momentum=bn_momentum),
        )
        self.out_channels = channels

    @classmethod
    def backbone_arguments(cls, backbone: Backbone) -> dict[str, Any]:
        return {"in_channels": backbone.out_channels, "low_level_channels": low_level_feature(backbone).channels,
                "encoder_stride": backbone.output_stride}

    def forward(self, x: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = F.interpolate(self.context(x), size=low_level.shape[-2:], mode="bilinear", align_corners=False)
        return self.refine(torch.cat([y, self.reduce(low_level)], dim=1))

    # -- what the rest of atrous asks -----------------------------------------------------
    @property
    def global_context(self) -> bool:  # type: ignore[override]
        return self.context.global_context

    def conv_path(self) -> list[ConvSpec]:
        """The context head's path, then the decoder's two 3×3 convs in encoder pixels."""
        span = 2 * (3 - 1) * LOW_LEVEL_STRIDE
        if span % self.encoder_stride:
            raise ConfigError(f"the decoder's receptive field is fractional at output stride {self.encoder_stride}")
        return [*self.context.conv_path(), ConvSpec(1 + span // self.encoder_stride)]

    def path_fields(self) -> PathFields:
        return self.context.path_fields()

    def backbone_output_stride(self, output_stride: int) -> int:
        return self.context.backbone_output_stride(output_stride)

    def check_output_stride(self, old: int, new: int) -> None:
        self.context.check_output_stride(old, new)

    def set_output_stride(self, old: int, new: int, backbone: Backbone) -> None:
        self.context.set_output_stride(old, new, backbone)
        self.encoder_stride = backbone.output_stride


def low_level_feature(backbone: Backbone):
    """The backbone's last feature map at stride 4 (ResNet ``layer1``, ConvNeXt ``stage1``)."""
    found = [f for f in backbone.feature_info if f.stride == LOW_LEVEL_STRIDE]
    if not found:
        raise ConfigError(
            f"DeepLabV3+ needs a stride-4 feature map; this backbone's maps have strides "
            f"{[f.stride for f in backbone.feature_info]}"
        )
    return found[-1]
