"""Confusion-matrix figure: which classes are mistaken for which.

The matrix is the one :mod:`atrous.evaluation.metrics` accumulates (rows: ground truth,
columns: prediction, ignored pixels excluded), computed here by running the model on the
split. Each row is normalised by its ground-truth pixel count, so a row reads "of the pixels of
this class, the fraction predicted as each class" (the diagonal is the class recall). Only
classes present in the truth or the predictions are shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.base import ClassInfo, SegmentationDataset
from ..evaluation.metrics import SegmentationMetrics, metrics_from_confusion
from .common import batches, logits_on_cpu, plt, present_classes, save_figure


@torch.no_grad()
def confusion_matrix(model: torch.nn.Module, dataset: SegmentationDataset, indices: Sequence[int],
                     batch_size: int = 4) -> torch.Tensor:
    """``(K, K)`` int64 pixel counts (rows: truth, columns: prediction) over ``indices``."""
    classes = dataset.classes
    metrics = SegmentationMetrics(classes.num_classes, classes.names, classes.ignore_index)
    model.eval()
    for _, x, y in batches(dataset, indices, batch_size):
        metrics.update(logits_on_cpu(model, x), y)
    return metrics.compute().long()


def row_normalize(confusion: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (rows of absent classes stay zero), float64."""
    c = confusion.double()
    return c / c.sum(1, keepdim=True).clamp(min=1)


def confusion_summary(confusion: torch.Tensor, classes: ClassInfo) -> dict[str, Any]:
    """The numbers behind the figure: shown classes, counts, row-normalised matrix, IoU, and the
    largest off-diagonal confusions."""
    shown = present_classes(confusion)
    names = [classes.names[c] for c in shown]
    sub = confusion[shown][:, shown]
    normalized = row_normalize(sub)
    metrics = metrics_from_confusion(confusion, classes.names)
    off = [(float(normalized[i, j]), names[i], names[j]) for i in range(len(shown)) for j in range(len(shown))
           if i != j and normalized[i, j] > 0]
    return {
        "classes": names,
        "normalization": "each row (ground-truth class) divided by its pixel count; columns: predicted class",
        "counts": sub,
        "row_normalized": normalized,
        "per_class_iou": {n: metrics["per_class_iou"][n] for n in names},
        "mIoU": metrics["mIoU"],
        "pixel_accuracy": metrics["pixel_accuracy"],
        "top_confusions": [{"truth": t, "predicted": p, "fraction_of_truth": f}
                           for f, t, p in sorted(off, reverse=True)[:10]],
    }


def plot_confusion(summary: dict[str, Any], output: Path, title: str = "") -> Path:
    """Row-normalised confusion matrix with class names on both axes and percentages."""
    names, matrix = summary["classes"], np.asarray(summary["row_normalized"])
    size = max(5.0, 0.55 * len(names) + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(100 * matrix, cmap="Blues", vmin=0, vmax=100)
    for (i, j), value in np.ndenumerate(100 * matrix):
        if value >= 0.5:
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if value > 55 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="predicted class", ylabel="ground-truth class")
    ax.set_title(title or f"Confusion matrix, rows normalised (mIoU {100 * summary['mIoU']:.1f}%)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the ground-truth class's pixels")
    fig.tight_layout()
    return save_figure(fig, output)
