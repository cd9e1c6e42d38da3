"""Feature similarity to a class (report §5.2, Fig. 3).

"Cosine similarity is used to measure the similarities between features of pixels and a fixed
class": every pixel of the head's output feature map (``Segmentor.forward_head_features``, the
classifier's input, ``(N, C, H/os, W/os)``) is compared with the class's *prototype*, the mean
feature over the ground-truth pixels of that class. Labels are brought to the feature grid by
taking the label at the centre of each feature cell. The prototype is averaged over all the
analysed images (``prototype="dataset"``, default: one fixed vector per class, comparable
across images) or over each image alone (``"image"``: undefined where the class is absent).

Hot regions that follow the class's objects (and stay cold on look-alike classes) show that
the head's features separate the class; the prototype similarity matrix quantifies which
classes the features confuse (the report names bus/car and truck/train).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.base import ClassInfo
from ..data.palettes import colorize
from .common import legend_handles, model_device, plt, save_figure


def labels_on_grid(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(N, H, W)`` labels → ``(N, h, w)``: the label at the centre of each of ``h × w`` cells."""
    height, width = labels.shape[-2:]
    rows = ((torch.arange(size[0]) + 0.5) * height / size[0]).long().clamp(max=height - 1)
    cols = ((torch.arange(size[1]) + 0.5) * width / size[1]).long().clamp(max=width - 1)
    return labels[:, rows][:, :, cols]


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, class_ids: Sequence[int]) -> torch.Tensor:
    """Mean feature of each class over its pixels, ``(P, C)``; NaN rows for absent classes.

    Args:
        features: ``(N, C, h, w)``.
        labels: ``(N, h, w)`` on the same grid (see :func:`labels_on_grid`).
        class_ids: the ``P`` classes.
    """
    flat = features.permute(1, 0, 2, 3).reshape(features.shape[1], -1)  # (C, N·h·w)
    lab = labels.reshape(-1)
    rows = []
    for c in class_ids:
        mask = lab == c
        rows.append(flat[:, mask].mean(1) if mask.any() else torch.full((flat.shape[0],), float("nan")))
    return torch.stack(rows)


def similarity_maps(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pixel's feature with each prototype: ``(N, C, h, w)`` and
    ``(P, C)`` → ``(N, P, h, w)`` in ``[−1, 1]`` (NaN for a NaN prototype)."""
    f = F.normalize(features, dim=1)
    p = F.normalize(prototypes, dim=1)
    return torch.einsum("nchw,pc->nphw", f, p)


def prototype_similarity(prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between prototypes, ``(P, P)``."""
    p = F.normalize(prototypes, dim=1)
    return p @ p.T


def region_means(maps: torch.Tensor, labels: torch.Tensor, class_ids: Sequence[int]) -> torch.Tensor:
    """Mean similarity to prototype ``i`` over the pixels of class ``j``: ``(P, P)``."""
    out = torch.full((len(class_ids), len(class_ids)), float("nan"))
    for j, c in enumerate(class_ids):
        mask = labels == c
        if mask.any():
            out[:, j] = maps.permute(1, 0, 2, 3)[:, mask].nanmean(1)
    return out


@torch.no_grad()
def feature_similarity(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, class_ids: Sequence[int], prototype: str = "dataset"
) -> dict[str, torch.Tensor]:
    """Head features of ``images`` ``(N, 3, H, W)`` and their similarity to each class.

    Returns ``maps`` ``(N, P, h, w)``, ``prototypes`` (``(P, C)``, or ``(N, P, C)`` per image),
    ``grid_labels`` ``(N, h, w)`` and ``predictions`` ``(N, H, W)``.
    """
    if prototype not in ("dataset", "image"):
        raise ValueError(f"prototype must be 'dataset' or 'image', got {prototype!r}")
    model.eval()
    features, _ = model.forward_head_features(images.to(model_device(model)))
    logits = F.interpolate(model.classifier(features), size=images.shape[-2:], mode="bilinear",
                           align_corners=model.align_corners)
    features, logits = features.float().cpu(), logits.float().cpu()
    grid = labels_on_grid(labels, features.shape[-2:])
    if prototype == "dataset":
        protos = class_prototypes(features, grid, class_ids)
        maps = similarity_maps(features, protos)
    else:
        protos = torch.stack([class_prototypes(features[i : i + 1], grid[i : i + 1], class_ids) for i in range(len(images))])
        maps = torch.cat([similarity_maps(features[i : i + 1], protos[i]) for i in range(len(images))])
    return {"maps": maps, "prototypes": protos, "grid_labels": grid, "predictions": logits.argmax(1)}


def plot_similarity(
    images: Sequence[np.ndarray],
    predictions: torch.Tensor,
    truths: torch.Tensor,
    maps: torch.Tensor,
    class_ids: Sequence[int],
    classes: ClassInfo,
    output: Path,
    title: str = "",
) -> Path:
    """One row per image: image, prediction, truth, then one heat map per class (report Fig. 3)."""
    n, p = len(images), len(class_ids)
    h, w = images[0].shape[:2]
    cols = 3 + p
    panel = 3.0 if w >= h else 2.2
    fig, axes = plt.subplots(n, cols, figsize=(cols * panel + 1.0, n * (panel * h / w + 0.4) + 1.0), squeeze=False,
                             layout="constrained")
    low = float(np.floor(min(0.0, float(maps.nan_to_num(1.0).min())) * 10) / 10)  # features are mostly >= 0
    ignore = classes.ignore_index
    shown: set[int] = set()
    for i in range(n):
        pred, truth = predictions[i].numpy(), truths[i].numpy()
        shown |= set(np.unique(pred).tolist()) | set(np.unique(truth[truth != ignore]).tolist())
        panels = [(images[i], "image"), (colorize(pred, classes.palette), "prediction"),
                  (colorize(truth, classes.palette), "ground truth")]
        for j, (panel, name) in enumerate(panels):
            axes[i, j].imshow(panel, interpolation="nearest")
            axes[i, j].set_title(name, fontsize=9)
        for k, c in enumerate(class_ids):
            ax = axes[i, 3 + k]
            im = ax.imshow(maps[i, k].numpy(), cmap="jet", vmin=low, vmax=1, interpolation="bilinear",
                           extent=(-0.5, w - 0.5, h - 0.5, -0.5))
            ax.set_title(f"similarity to '{classes.names[c]}'", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[:, 3:].ravel().tolist(), fraction=0.02, pad=0.01, label="cosine similarity")
    ids = sorted(c for c in shown if c < classes.num_classes)
    fig.legend(handles=legend_handles(classes, ids), loc="outside lower center", ncol=min(len(ids), 12), fontsize=8,
               frameon=False)
    fig.suptitle(title or "Cosine similarity of head features to each class's mean feature (report Fig. 3)")
    return save_figure(fig, output)


def similarity_summary(result: dict[str, torch.Tensor], class_ids: Sequence[int], classes: ClassInfo) -> dict[str, Any]:
    """The numbers behind the figure: prototype × prototype similarity and the mean similarity
    to each prototype (rows) over the pixels of each class (columns)."""
    names = [classes.names[c] for c in class_ids]
    protos = result["prototypes"]
    summary: dict[str, Any] = {"classes": names, "feature_grid": list(result["maps"].shape[-2:])}
    if protos.ndim == 2:
        summary["prototype_similarity"] = prototype_similarity(protos)
    means = region_means(result["maps"], result["grid_labels"], class_ids)
    summary["mean_similarity_over_class_pixels"] = {
        names[i]: {names[j]: means[i, j] for j in range(len(names))} for i in range(len(names))
    }
    summary["definition"] = (
        "cosine similarity between each pixel's head feature (classifier input) and the class prototype, "
        "the mean feature over the class's ground-truth pixels (labels taken at feature-cell centres)"
    )
    summary["class_pixels_on_grid"] = {names[j]: int((result["grid_labels"] == c).sum()) for j, c in enumerate(class_ids)}
    return summary
