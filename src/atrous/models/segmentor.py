"""The segmentor: backbone → context head → 1×1 classifier → bilinear upsampling to the input.

A decoder head (DeepLabV3+) also reads one earlier backbone map, the one at its
``low_level_stride``; its logits are then at that stride (:attr:`Segmentor.logit_stride`).

DeepLabv3 §4.1 ("Upsampling logits"): the ground truth is never downsampled; the logits are
upsampled to the input size instead. ``align_corners`` is configurable because PyTorch-0.3-era
checkpoints (the official DenseASPP) were trained with corner-aligned bilinear upsampling.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, InputError
from .backbones import Backbone
from .heads import AuxHead, Head
from .receptive_field import stacked_receptive_field


def check_image_size(height: int, width: int, output_stride: int, scales: Sequence[float] = (1.0,)) -> None:
    """Refuse (:class:`~atrous.errors.InputError`) a ``height × width`` image that one of
    ``scales`` (each ``round(H·s) × round(W·s)``, as the test-time strategies resize) makes smaller
    than ``output_stride``: the network's last feature map would be empty. The one check of the
    model's forward, the engines, ``atrous predict``/``serve`` and the evaluation strategies."""
    for scale in scales:
        h, w = (height, width) if scale == 1 else (max(1, round(height * scale)), max(1, round(width * scale)))
        if min(h, w) < output_stride:
            at = f" (at scale {scale:g}: {h}x{w})" if scale != 1 else ""
            advice = f"pad or resize it to at least {output_stride}x{output_stride}"
            if at:
                advice += f" at every scale, or use scales of at least {output_stride / min(height, width):.3g}"
            raise InputError(f"image of {height}x{width} pixels{at} is smaller than the model's output stride "
                             f"{output_stride}; {advice}")


class Segmentor(nn.Module):
    """Semantic segmentation network.

    Args:
        backbone: feature extractor; its last feature map feeds the head.
        head: a context :class:`~atrous.models.heads.Head` fed by the backbone's last feature map.
        num_classes: number of output classes ``K``.
        classifier_dropout: 2-D dropout before the classifier (official DenseASPP: 0.1).
        feature_upsample: bilinear upsampling factor of the backbone features before the head
            (report Table 1 #2/#3 and the official code at output stride 16 upsample by 2).
        align_corners: of every bilinear resize in the model.
        aux_head: optional auxiliary classifier on the backbone feature named ``aux_feature``.

    Shapes: ``(N, 3, H, W)`` → logits ``(N, K, H, W)``.
    """

    def __init__(
        self,
        backbone: Backbone,
        head: Head,
        num_classes: int,
        *,
        classifier_dropout: float = 0.0,
        feature_upsample: int = 1,
        align_corners: bool = False,
        aux_head: AuxHead | None = None,
        aux_feature: str | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be positive, got {num_classes}")
        if feature_upsample < 1 or backbone.output_stride % feature_upsample:
            raise ConfigError(
                f"feature_upsample must divide the backbone's output stride {backbone.output_stride}, "
                f"got {feature_upsample}"
            )
        self.backbone, self.head = backbone, head
        self.num_classes = num_classes
        self.feature_upsample = feature_upsample
        self.align_corners = align_corners
        self.dropout = nn.Dropout2d(classifier_dropout) if classifier_dropout > 0 else nn.Identity()
        self.classifier = nn.Conv2d(head.out_channels, num_classes, kernel_size=1)
        if (aux_head is None) != (aux_feature is None):
            raise ConfigError("aux_head and aux_feature go together")
        names = [f.name for f in backbone.feature_info]
        if aux_feature is not None and aux_feature not in names:
            raise ConfigError(f"aux_feature {aux_feature!r} is not a backbone feature; choose from {names}")
        self.aux_head, self.aux_feature = aux_head, aux_feature
        self.low_level_feature: str | None = None
        if head.low_level_stride is not None:
            found = [f.name for f in backbone.feature_info if f.stride == head.low_level_stride]
            if not found:
                raise ConfigError(f"the head reads a stride-{head.low_level_stride} backbone map; this backbone has none")
            self.low_level_feature = found[-1]

    # -- properties -----------------------------------------------------------------------
    @property
    def output_stride(self) -> int:
        """Input resolution / logit resolution before the final upsampling (DeepLabv3 §3.1)."""
        return self.backbone.output_stride // self.feature_upsample * self.head.extra_stride

    @property
    def logit_stride(self) -> int:
        """Input resolution / logit resolution: the output stride, or a decoder's finer stride."""
        return self.head.low_level_stride or self.output_stride

    @property
    def head_receptive_field(self) -> int:
        """The head's theoretical maximum receptive field in feature-map pixels (report §4.1)."""
        return stacked_receptive_field(self.head.conv_path())

    def set_output_stride(self, output_stride: int) -> None:
        """Switch the model's output stride in place, keeping every weight (DeepLabv3 §4.1–4.3:
        train at 16, evaluate at 8). The backbone is re-dilated, cascaded blocks are re-planned
        and ASPP rates scale with the stride ((6, 12, 18) at 16 ↔ (12, 24, 36) at 8).
        DenseASPP rates stay as they are (the official code keeps them and upsamples instead).
        """
        old = self.output_stride
        self.head.check_output_stride(old, output_stride)  # before anything changes
        self.backbone.set_output_stride(self.head.backbone_output_stride(output_stride) * self.feature_upsample)
        self.head.set_output_stride(old, output_stride, self.backbone)

    # -- forward --------------------------------------------------------------------------
    @property
    def in_channels(self) -> int:
        """Channels of the images the model reads (``model.in_channels``; 3 for RGB)."""
        return self.backbone.in_channels

    def class_layers(self) -> dict[str, nn.Conv2d]:
        """The layers with one output channel per class, by state-dict prefix: the classifier and
        the auxiliary head's classifier (what fine-tuning onto another label set re-initialises)."""
        layers = {"classifier": self.classifier}
        if self.aux_head is not None:
            layers[f"aux_head.{len(self.aux_head) - 1}"] = self.aux_head.classifier
        return layers

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected an image batch of shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        check_image_size(int(x.shape[-2]), int(x.shape[-1]), self.output_stride)

    def _upsample(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def forward_head_features(
        self, x: torch.Tensor, keep: Collection[str] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(N, 3, H, W)`` → head output ``(N, C, H/s, W/s)`` (``s``: :attr:`logit_stride`) and the backbone's features:
        all of them, or the last one and those named in ``keep`` (the others are not held while
        later stages run, see :meth:`Backbone.forward`)."""
        if not torch.compiler.is_compiling():
            self._check_input(x)
        last, low = self.backbone.feature_info[-1].name, self.low_level_feature
        features = self.backbone(x, None if keep is None else {last, *keep, *([low] if low else [])})
        y = features[last]
        if self.feature_upsample > 1:
            h, w = y.shape[-2:]
            y = self._upsample(y, (h * self.feature_upsample, w * self.feature_upsample))
        return (self.head(y, features[low]) if low else self.head(y)), features

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits ``(N, K, H, W)`` and auxiliary logits ``(N, K, H, W)`` (``None`` without aux head)."""
        y, features = self.forward_head_features(x, keep=[self.aux_feature] if self.aux_head is not None else [])
        logits = self._upsample(self.classifier(self.dropout(y)), x.shape[-2:])
        aux = None
        if self.aux_head is not None:
            aux = self._upsample(self.aux_head(features[self.aux_feature]), x.shape[-2:])
        return logits, aux

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, H, W)`` → logits ``(N, K, H, W)``."""
        y, _ = self.forward_head_features(x, keep=())
        return self._upsample(self.classifier(self.dropout(y)), x.shape[-2:])
