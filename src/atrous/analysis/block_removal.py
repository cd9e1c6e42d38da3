"""Removing the top DenseASPP layers at inference (report §5.2, Fig. 4).

"We tried removing some of the upper DenseASPP blocks ... Larger objects were still recognizable
when removing 1–2 DenseASPP blocks, but further they suffered significantly ... Smaller objects,
such as cars in that image, are still recognized more or less correctly even with the 3 top
blocks removed." The report does not retrain: the trained classifier is applied with the removed
layers' features set to zero (:func:`removed_top_layers`, forward hooks on the layers the head
offers, :meth:`~atrous.models.heads.Head.removable_layers`). Removing the top ``k``
of ``L`` layers leaves the rates ``d_1 … d_{L−k}`` and a maximum field of
``R_{3,d_1} + … + R_{3,d_{L−k}} − (L − k − 1)`` feature pixels (1 when ``k = L``: the classifier
sees the backbone features alone). Per-class IoU against ``k`` shows which classes need which
scales: a class whose IoU collapses once the large rates are gone needs a large field.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.patches import Rectangle
from torch import nn

from ..data.base import ClassInfo, SegmentationDataset
from ..data.palettes import colorize
from ..errors import InputError
from ..evaluation.metrics import SegmentationMetrics
from ..models.heads import Head
from ..models.receptive_field import stacked_receptive_field
from ..models.segmentor import Segmentor
from .common import (
    batches,
    legend_handles,
    logits_on_cpu,
    plt,
    present_classes,
    sample,
    save_figure,
)


@contextmanager
def removed_top_layers(head: Head, count: int) -> Iterator[Head]:
    """Run ``head`` with its top ``count`` removable layers removed (DenseASPP's atrous layers,
    :meth:`~atrous.models.heads.Head.removable_layers`), then restore it.

    A removed layer's output is replaced by zeros (a forward hook), so the trained classifier
    keeps its input width and sees no contribution from the removed scales; no parameter, buffer
    or state-dict name changes. ``count`` = 0 is the full head; ``count`` = all its layers
    leaves only the head's input features (for the official DenseASPP: rectified, by the
    backbone's ``relu5``).
    """
    layers = [layer for layer, _ in head.removable_layers()]
    if not 0 <= count <= len(layers):
        raise ValueError(f"can remove 0 to {len(layers)} layers of this {type(head).__name__}, got {count}")

    def zero(module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(output)

    hooks = [layer.register_forward_hook(zero) for layer in layers[len(layers) - count:]]
    try:
        yield head
    finally:
        for hook in hooks:
            hook.remove()


def denseaspp_head(model: Segmentor) -> Head:
    """The model's head if it has layers to remove (a DenseASPP head), or a clear error."""
    head = getattr(model, "head", None)
    if not isinstance(head, Head) or not head.removable_layers():
        raise InputError(
            f"block removal needs a model with a DenseASPP head; this model's head is {type(head).__name__} "
            "(report Fig. 4 removes DenseASPP layers)"
        )
    return head


@torch.no_grad()
def block_removal(
    model: Segmentor, dataset: SegmentationDataset, indices: Sequence[int], *, examples: int | Sequence[int] = 1,
    batch_size: int = 4,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``indices`` with the top ``k = 0 … L`` layers removed.

    Args:
        examples: indices of images whose predictions to return, or a number ``n``: the ``n``
            images whose predictions change most (pixels differing from ``k = 0``, summed over k).

    Returns ``{"rows": [{removed, rates, max_rf, mIoU, per_class_iou, confusion}, ...],
    "changed_pixels": {index: count}, "predictions": {index: (L + 1, H, W) labels}}``.
    """
    head = denseaspp_head(model)
    specs = [spec for _, spec in head.removable_layers()]
    model.eval()
    classes = dataset.classes
    ks = range(len(specs) + 1)
    metrics = [SegmentationMetrics(classes.num_classes, classes.names, classes.ignore_index) for _ in ks]
    changed: dict[int, int] = {}
    for idx, x, y in batches(dataset, indices, batch_size):
        full = None
        for k in ks:
            with removed_top_layers(head, k):
                logits = logits_on_cpu(model, x)
            metrics[k].update(logits, y)
            pred = logits.argmax(1)
            full = pred if full is None else full
            for i, index in enumerate(idx):
                changed[index] = changed.get(index, 0) + int((pred[i] != full[i]).sum())
    if isinstance(examples, int):
        examples = sorted(changed, key=lambda i: -changed[i])[:examples]
    predictions = {}
    for index in examples:
        x = sample(dataset, index)[1].unsqueeze(0)
        stack = []
        for k in ks:
            with removed_top_layers(head, k):
                stack.append(logits_on_cpu(model, x).argmax(1)[0])
        predictions[index] = torch.stack(stack)
    rows = []
    for k in ks:
        kept = specs[: len(specs) - k]
        result = metrics[k].compute_metrics()
        rows.append({
            "removed": k,
            "rates": [spec.dilation for spec in kept],
            "max_rf": stacked_receptive_field(kept),
            "mIoU": result["mIoU"],
            "per_class_iou": result["per_class_iou"],
            "confusion": metrics[k].compute(),
        })
    return {"rows": rows, "changed_pixels": changed, "predictions": predictions}


def plot_block_removal(
    result: dict[str, Any], classes: ClassInfo, output: Path, *, example_images: dict[int, np.ndarray] | None = None,
    example_truths: dict[int, torch.Tensor] | None = None, title: str = "",
) -> Path:
    """Per-class IoU against the number of removed layers (left), and the predictions on the
    example images for every ``k`` (right), as the report's Fig. 4."""
    rows = result["rows"]
    ks = [r["removed"] for r in rows]
    present = present_classes(rows[0]["confusion"])
    truth_present = [c for c in present if rows[0]["confusion"][c].sum() > 0]
    examples = list(result["predictions"])
    ncols = 1 + len(ks) // 2 + 1 if examples else 1
    fig = plt.figure(figsize=(6.5 + 3.2 * (ncols - 1), 4.6 + 2.2 * max(0, len(examples) - 1)), layout="constrained")
    grid = fig.add_gridspec(max(1, 2 * len(examples)), ncols, width_ratios=[2.0] + [1.0] * (ncols - 1))
    ax = fig.add_subplot(grid[:, 0])
    names = [classes.names[c] for c in truth_present] + ["mIoU"]
    table = np.array([[100 * r["per_class_iou"][n] for r in rows] for n in names[:-1]] + [[100 * r["mIoU"] for r in rows]])
    ax.imshow(table, cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for (i, j), value in np.ndenumerate(table):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=8,
                color="white" if value < 60 else "black", fontweight="bold" if i == len(names) - 1 else None)
    for i, c in enumerate(truth_present):  # palette swatches left of the class names
        ax.add_patch(Rectangle((-0.03, i - 0.3), 0.022, 0.6, color=classes.palette[c] / 255.0, clip_on=False,
                               transform=ax.get_yaxis_transform()))
    ax.axhline(len(names) - 1.5, color="white", lw=2)
    ax.set_yticks(range(len(names)), names)
    ax.tick_params(axis="y", pad=22, length=0)
    ax.set_xticks(ks, [f"{k}\nR={r['max_rf']}" for k, r in zip(ks, rows, strict=True)])
    ax.set(xlabel="top layers removed (remaining max field R, feature px)",
           title="IoU (%) per class as top layers are removed")
    per_row = ncols - 1
    for e, index in enumerate(examples):
        preds = result["predictions"][index]
        panels = [(example_images[index], "image") if example_images else None]
        if example_truths is not None:
            panels.append((colorize(example_truths[index].numpy(), classes.palette), "ground truth"))
        for k, r in zip(ks, rows, strict=True):
            rates = ",".join(map(str, r["rates"])) or "none"
            panels.append((colorize(preds[k].numpy(), classes.palette), f"{k} removed (rates {rates})"))
        panels = [p for p in panels if p is not None]
        for j, (panel, name) in enumerate(panels[: 2 * per_row]):
            sub = fig.add_subplot(grid[2 * e + j // per_row, 1 + j % per_row])
            sub.imshow(panel, interpolation="nearest")
            sub.set_title(name, fontsize=8)
            sub.set_xticks([])
            sub.set_yticks([])
    if examples:
        shown = sorted({int(v) for p in result["predictions"].values() for v in p.unique()} | set(truth_present))
        fig.legend(handles=legend_handles(classes, [c for c in shown if c < classes.num_classes]),
                   loc="outside lower center", ncol=12, fontsize=8, frameon=False)
    fig.suptitle(title or "Block removal: DenseASPP without its top k atrous layers (report Fig. 4)")
    return save_figure(fig, output)
