"""Class weights from the training split's pixel frequencies (``train.loss.class_weights: auto``).

Two classic rules, from the labelled pixels of the untransformed training masks:

* ``median_frequency`` (``auto``) — Eigen & Fergus, "Predicting Depth, Surface Normals and
  Semantic Labels ..." (ICCV 2015) §4: ``w_c = median(f) / f_c`` where ``f_c`` is the pixel count
  of class ``c`` divided by the pixel count of the images in which ``c`` appears;
* ``enet`` — Paszke et al., "ENet" (2016) §5.2: ``w_c = 1 / ln(1.02 + p_c)`` where ``p_c`` is the
  share of class ``c`` among all labelled pixels.

A class that never appears in the training split gets weight 0 (no pixel of it is ever a target).
:func:`run_class_weights` computes them once per run, with a progress bar, and keeps them in the
run folder's ``class_weights.json``; a resumed run reads them back instead of scanning again.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError
from ..data.base import SegmentationDataset
from ..io import atomic_write, json_text

WEIGHTS_FILE = "class_weights.json"
ENET_C = 1.02  # ENet §5.2


class _Counts(Dataset):
    """Item ``i`` → the pixel count of each class in mask ``i`` ``(K,)`` int64 (ignored and
    out-of-range labels not counted)."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor:
        k = self.dataset.classes.num_classes
        mask = self.dataset.load(index)[1].flatten().long()
        return torch.bincount(mask[(mask >= 0) & (mask < k)], minlength=k)


def _as_is(item: Any) -> Any:
    return item


def pixel_counts(dataset: SegmentationDataset, *, num_workers: int = 0, progress: bool = True) -> np.ndarray:
    """Per image and class, the labelled pixel counts of ``dataset``'s masks ``(len, K)``, read
    in ``num_workers`` processes behind a progress bar on stderr."""
    from tqdm import tqdm

    loader = DataLoader(_Counts(dataset), batch_size=None, num_workers=num_workers, collate_fn=_as_is)
    rows = [counts.numpy() for counts in tqdm(loader, total=len(dataset), desc="class weights", unit="mask",
                                               file=sys.stderr, disable=None if progress else True)]
    return np.stack(rows) if rows else np.zeros((0, dataset.classes.num_classes), dtype=np.int64)


def weights_from_counts(counts: np.ndarray, mode: str) -> list[float]:
    """Class weights from per-image class pixel counts ``(images, K)`` (see the module docstring)."""
    counts = np.asarray(counts, dtype=np.float64)
    per_class = counts.sum(0)
    seen = per_class > 0
    if not seen.any():
        raise ConfigError("train.loss.class_weights: the training split has no labelled pixel to count")
    weights = np.zeros(counts.shape[1])
    if mode in ("auto", "median_frequency"):
        image_pixels = counts.sum(1)  # labelled pixels of each image
        present = counts > 0
        frequency = per_class[seen] / (present[:, seen] * image_pixels[:, None]).sum(0)
        weights[seen] = np.median(frequency) / frequency
    elif mode == "enet":
        weights[seen] = 1 / np.log(ENET_C + per_class[seen] / per_class.sum())
    else:
        raise ConfigError(f"train.loss.class_weights: unknown mode {mode!r}")
    return [float(w) for w in weights]


def weight_mode(config: Mapping[str, Any]) -> str | None:
    """The mode ``train.loss.class_weights`` names (``None``: a list, or no weights)."""
    loss = (config.get("train") or {}).get("loss")
    value = loss.get("class_weights") if isinstance(loss, Mapping) else None
    return value if isinstance(value, str) else None


def with_class_weights(config: Mapping[str, Any], weights: Sequence[float] | None) -> dict[str, Any]:
    """``config`` with ``train.loss.class_weights`` replaced by ``weights`` (``None``: removed)."""
    train = dict(config.get("train") or {})
    loss = dict(train.get("loss") or {})
    if weights is None:
        loss.pop("class_weights", None)
    else:
        loss["class_weights"] = [float(w) for w in weights]
    return {**config, "train": {**train, "loss": loss}}


def read_weights(path: Path, mode: str, class_names: Sequence[str]) -> list[float] | None:
    """The weights a run folder's ``class_weights.json`` holds, if they were computed by ``mode``
    for these classes (else ``None``)."""
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if stored.get("mode") != mode or stored.get("class_names") != list(class_names):
        return None
    return [float(w) for w in stored["weights"]]


def run_class_weights(
    dataset: SegmentationDataset, mode: str, run_folder: Path, *, reuse: bool, num_workers: int = 0,
    progress: bool = True,
) -> tuple[list[float], dict[str, Any] | None]:
    """Weights of ``mode`` for ``dataset``: read from ``run_folder/class_weights.json`` when
    ``reuse`` (a resumed run) finds them there, else computed. Returns the weights and, when
    computed, the record to write with :func:`write_weights` once the run owns its folder."""
    names = list(dataset.classes.names)
    path = run_folder / WEIGHTS_FILE
    if reuse and (stored := read_weights(path, mode, names)) is not None:
        return stored, None
    counts = pixel_counts(dataset, num_workers=num_workers, progress=progress)
    weights = weights_from_counts(counts, mode)
    record = {"mode": mode, "class_names": names, "weights": weights,
              "pixel_counts": [int(c) for c in counts.sum(0)], "images": int(counts.shape[0])}
    return weights, record


def write_weights(run_folder: Path, record: Mapping[str, Any]) -> Path:
    """Write the record of :func:`run_class_weights` as ``class_weights.json``, atomically."""
    text = json_text(dict(record))
    return atomic_write(run_folder / WEIGHTS_FILE, lambda tmp: tmp.write_text(text), overwrite=True)


def evaluation_class_weights(config: Mapping[str, Any], run_folder: Path) -> dict[str, Any]:
    """``config`` for evaluation: computed weights read from the run folder when they are there,
    else dropped (they only weigh the reported validation loss)."""
    mode = weight_mode(config)
    if mode is None:
        return dict(config)
    path = run_folder / WEIGHTS_FILE
    try:
        stored = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        stored = None
    weights = stored["weights"] if stored and stored.get("mode") == mode else None
    if weights is not None and not all(math.isfinite(w) for w in weights):
        weights = None
    return with_class_weights(config, weights)
