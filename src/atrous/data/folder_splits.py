"""Train and val of a flat folder dataset: a seeded random partition, written as file lists.

A folder without ``train/`` and ``val/`` subfolders (``root/images`` + ``root/masks``) is
partitioned by ``val_fraction`` and ``split_seed``: the images are shuffled by
``numpy.random.default_rng(split_seed)`` in file-name order and the first
``round(val_fraction · n)`` (at least one, at most ``n − 1``) are the validation set. The same
files, fraction and seed always give the same partition.

``atrous fit`` writes the partition into the run folder (``<output_dir>/splits/train.txt`` and
``val.txt``: one image file per line, relative to the dataset root) and a resumed run reads it
back, so images added to the folder later never move between the sets of a run. A dataset may
also be pinned to lists of its own with ``split_lists: <folder holding train.txt and val.txt>``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError
from ..io import atomic_write
from .base import DatasetError

PARTITION_SPLITS = ("train", "val")
SPLITS_FOLDER = "splits"  # in a run folder


@dataclass(frozen=True)
class Partition:
    """Image files (relative to the dataset root, sorted) of the train and val sets."""

    train: tuple[str, ...]
    val: tuple[str, ...]

    def files(self, split: str) -> tuple[str, ...]:
        return self.train if split == "train" else self.val


def partition(files: Sequence[str], val_fraction: float, seed: int, *, where: str = "data.dataset") -> Partition:
    """Seeded random train/val partition of ``files`` (see the module docstring).

    >>> p = partition([f"images/{i}.jpg" for i in range(10)], 0.2, seed=0)
    >>> len(p.train), len(p.val), sorted(p.train + p.val) == sorted(f"images/{i}.jpg" for i in range(10))
    (8, 2, True)
    """
    files = sorted(files)
    if len(files) < 2:
        raise DatasetError(f"{where}.val_fraction: {len(files)} image(s) cannot be split into train and val; add images")
    n_val = min(max(round(val_fraction * len(files)), 1), len(files) - 1)
    order = np.random.default_rng(seed).permutation(len(files))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return Partition(tuple(train), tuple(val))


def check_val_fraction(value: object, where: str = "data.dataset.val_fraction") -> float:
    """``val_fraction`` must be a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value < 1) or math.isnan(value):
        raise ConfigError(f"{where}: the share of images held out for validation, a number between 0 and 1 "
                          f"(e.g. 0.2), got {value!r}")
    return float(value)


def read_partition(folder: str | Path) -> Partition:
    """The partition stored in ``folder`` (``train.txt``, ``val.txt``)."""
    folder = Path(folder)
    lists = {}
    for split in PARTITION_SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            raise DatasetError(
                f"{path}: file list not found; split_lists names a folder holding train.txt and val.txt "
                "(one image file per line, relative to the dataset root), as atrous fit writes into <run>/splits"
            )
        lists[split] = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    both = sorted(set(lists["train"]) & set(lists["val"]))
    if both:
        raise DatasetError(f"{folder}: {len(both)} file(s) in both train.txt and val.txt, e.g. {both[0]}; "
                           "an image belongs to one of them")
    return Partition(lists["train"], lists["val"])


def write_partition(folder: str | Path, value: Partition) -> Path:
    """Write ``train.txt`` and ``val.txt`` into ``folder`` (atomically); returns ``folder``."""
    folder = Path(folder)
    for split in PARTITION_SPLITS:
        text = "".join(f"{name}\n" for name in value.files(split))
        atomic_write(folder / f"{split}.txt", lambda tmp, text=text: tmp.write_text(text, encoding="utf-8"))
    return folder


def resumed_split_lists(data_cfg: Mapping[str, Any] | None, run_dir: Path) -> Mapping[str, Any] | None:
    """``data_cfg`` with ``dataset.split_lists`` pointing at the partition a run stored in
    ``run_dir/splits``, when the run partitions a flat folder (``val_fraction``) and stored one;
    otherwise ``data_cfg`` as it is (a run of an earlier version draws the same partition again)."""
    dataset = (data_cfg or {}).get("dataset") or {}
    stored = run_dir / SPLITS_FOLDER
    if dataset.get("val_fraction") is None or dataset.get("split_lists") is not None:
        return data_cfg
    if not all((stored / f"{split}.txt").is_file() for split in PARTITION_SPLITS):
        return data_cfg
    return {**data_cfg, "dataset": {**dataset, "split_lists": str(stored)}}


def save_partition(run_dir: Path, datasets: Mapping[str, object]) -> Path | None:
    """Write the partition the datasets of a run share into ``run_dir/splits`` (nothing when
    none was partitioned); returns that folder or ``None``."""
    for dataset in datasets.values():
        value = getattr(dataset, "partition", None)
        if value is not None:
            return write_partition(run_dir / SPLITS_FOLDER, value)
    return None
