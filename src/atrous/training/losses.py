"""Losses: cross-entropy with ignore index, online hard-pixel mining, auxiliary loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SegmentationLoss(nn.Module):
    """Pixel-wise cross-entropy over logits at label resolution (DeepLabv3 §4.1: labels are
    never downsampled).

    Args:
        ignore_index: label of unlabelled pixels.
        ohem_thresh: with online hard-pixel mining, keep pixels whose true-class probability is
            below this threshold ...
        ohem_min_kept: ... but at least this many of the hardest pixels per batch.
        aux_weight: weight of the auxiliary head's loss.
        class_weights: optional per-class weights.

    Shapes: logits ``(N, K, H, W)``, target ``(N, H, W)`` uint8 (the datasets' masks) or int64 → scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        *,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
        aux_weight: float = 0.4,
        class_weights: list[float] | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.ohem_thresh, self.ohem_min_kept = ohem_thresh, ohem_min_kept
        self.aux_weight = aux_weight
        self.register_buffer("class_weights", torch.tensor(class_weights) if class_weights else None)

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(
            logits, target, weight=self.class_weights, ignore_index=self.ignore_index, reduction="none"
        )
        valid = target != self.ignore_index
        if self.ohem_thresh is None:
            return loss[valid].sum() / valid.sum().clamp(min=1)
        losses = loss[valid]
        if losses.numel() == 0:
            return loss.sum() * 0.0
        # keep pixels with p_true < thresh (loss > -log thresh), at least min_kept hardest ones
        hard = losses > -torch.log(torch.tensor(self.ohem_thresh, device=losses.device))
        if hard.sum() < min(self.ohem_min_kept, losses.numel()):
            return losses.topk(min(self.ohem_min_kept, losses.numel())).values.mean()
        return losses[hard].mean()

    def forward(self, logits: torch.Tensor, target: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        target = target.long()  # masks travel as uint8 (an eighth of int64's bytes); cast once, on the device
        loss = self.pixel_loss(logits, target)
        if aux is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * self.pixel_loss(aux, target)
        return loss
