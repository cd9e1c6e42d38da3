"""Confusion-matrix segmentation metrics, as the Cityscapes and PASCAL VOC benchmarks compute them.

The confusion matrix ``C`` (rows: ground truth, columns: prediction) is accumulated over the
whole split, pixels labelled ``ignore_index`` excluded, then

* IoU_c = C_cc / (Σ_j C_cj + Σ_i C_ic − C_cc); a class absent from both ground truth and
  predictions has no IoU (NaN) and is left out of the mean, as cityscapesScripts does;
* mIoU = mean over classes with an IoU; pixel accuracy = Σ_c C_cc / Σ C;
* mean class accuracy = mean over present classes of C_cc / Σ_j C_cj;
* frequency-weighted IoU = Σ_c f_c · IoU_c with f_c the ground-truth frequency of class c.

:class:`SegmentationMetrics` wraps torchmetrics' confusion matrix, so the accumulation is
summed across DDP processes before the metrics are computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.classification import MulticlassConfusionMatrix


def metrics_from_confusion(confusion: torch.Tensor, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """All metrics from a ``(K, K)`` confusion matrix (rows: truth, columns: prediction)."""
    c = confusion.double()
    tp = c.diag()
    truth, predicted = c.sum(1), c.sum(0)
    union = truth + predicted - tp
    nan = torch.tensor(float("nan"), dtype=torch.float64)
    iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
    accuracy = torch.where(truth > 0, tp / truth.clamp(min=1), nan)
    total = c.sum()
    freq = truth / total if total > 0 else torch.zeros_like(truth)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(tp))]
    if len(names) != len(tp):
        raise ValueError(f"{len(names)} class names for a {len(tp)}-class confusion matrix")

    def mean(x: torch.Tensor) -> float:
        x = x[~x.isnan()]
        return float(x.mean()) if len(x) else float("nan")

    return {
        "mIoU": mean(iou),
        "pixel_accuracy": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_accuracy": mean(accuracy),
        "fw_iou": float((freq * torch.nan_to_num(iou)).sum()),
        "per_class_iou": {n: float(v) for n, v in zip(names, iou, strict=True)},
        "per_class_accuracy": {n: float(v) for n, v in zip(names, accuracy, strict=True)},
        "num_pixels": int(total),
    }


class SegmentationMetrics(MulticlassConfusionMatrix):
    """Accumulates a confusion matrix from logits or label maps; ``compute_metrics()`` → dict.

    ``update(preds, target)``: ``preds`` ``(N, K, H, W)`` logits or ``(N, H, W)`` labels,
    ``target`` ``(N, H, W)`` with ``ignore_index`` for unlabelled pixels.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, ignore_index: int = 255) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index, validate_args=False)
        self.class_names = list(class_names) if class_names is not None else None

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(1)
        if preds.shape != target.shape:
            raise ValueError(f"predictions {tuple(preds.shape)} and labels {tuple(target.shape)} differ in shape")
        super().update(preds, target)

    def compute_metrics(self) -> dict[str, Any]:
        return metrics_from_confusion(self.compute(), self.class_names)
