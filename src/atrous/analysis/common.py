"""Helpers shared by the analyses: class lookup, evaluation images, atomic PNG/JSON output.

Every ``atrous analyze`` subcommand writes ``<name>.png`` and ``<name>.json`` through
:func:`save_figure` and :func:`write_json`, both atomic (see :mod:`atrous.io`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from ..data.base import ClassInfo, SegmentationDataset  # noqa: E402
from ..errors import InputError
from ..io import atomic_write, json_text  # noqa: E402


def class_ids(classes: ClassInfo | Sequence[str], names: Sequence[str]) -> list[int]:
    """Train ids of ``names``; an unknown name is an error that lists the valid ones."""
    known = list(classes.names if isinstance(classes, ClassInfo) else classes)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown class name(s) {unknown}; classes: {known}")
    return [known.index(n) for n in names]


def sample(dataset: SegmentationDataset, index: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    """Item ``index`` ready for the model: the raw image ``(H, W, 3)`` uint8 resized to the
    network input, the normalised input ``(3, H, W)`` and the label map ``(H, W)`` int64, all
    at the resolution of the evaluation transforms."""
    x, labels = dataset[index]
    raw, _ = dataset.load(index)
    raw = raw.unsqueeze(0).float()
    if raw.shape[-2:] != x.shape[-2:]:
        raw = F.interpolate(raw, size=x.shape[-2:], mode="bilinear", antialias=True, align_corners=False)
    image = raw[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    return image, x, labels


def batches(
    dataset: SegmentationDataset, indices: Sequence[int], batch_size: int = 4
) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
    """``(indices, images (B, 3, H, W), labels (B, H, W))``: consecutive items of one size."""
    group: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for index in indices:
        x, y = dataset[index]
        if group and (len(group) == batch_size or group[0][1].shape != x.shape):
            yield [g[0] for g in group], torch.stack([g[1] for g in group]), torch.stack([g[2] for g in group])
            group = []
        group.append((index, x, y))
    if group:
        yield [g[0] for g in group], torch.stack([g[1] for g in group]), torch.stack([g[2] for g in group])


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def logits_on_cpu(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` with ``x`` moved to the model's device; float32 logits back on the CPU."""
    return model(x.to(model_device(model))).float().cpu()


def present_classes(confusion: torch.Tensor) -> list[int]:
    """Classes with ground-truth or predicted pixels in a ``(K, K)`` confusion matrix."""
    return [int(c) for c in torch.nonzero((confusion.sum(0) + confusion.sum(1)) > 0).flatten()]


def legend_handles(classes: ClassInfo, ids: Sequence[int]) -> list[Patch]:
    """Legend entries (palette colour, class name) for the classes ``ids``."""
    return [Patch(facecolor=classes.palette[i] / 255.0, edgecolor="0.3", label=classes.names[i]) for i in ids]


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON atomically (NaN becomes null: :func:`atrous.io.json_text`)."""
    text = json_text(data)
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Save ``fig`` as PNG atomically and close it."""
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path
