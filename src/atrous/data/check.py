"""``atrous check-data``: read every item of a split up front and report every problem at once.

Training stops at the first bad file, hours in, with one message; this scan reads each item with
the dataset's own :meth:`~atrous.data.base.SegmentationDataset.load` — exactly what training
reads, before any transform — and collects, for each item that fails, the files and what is
wrong: an unreadable or corrupt image, a label map of another size than its image, label values
that are not classes, a label image mode the dataset cannot read. On top of ``load``'s own checks
it verifies the contract of :mod:`atrous.data.base` (uint8 ``(3, H, W)`` image, ``(H, W)`` mask
of train ids ``0 … K−1`` or ``ignore_index``).

It also counts the pixels of each class (:class:`ClassPixels`, per split: JSON and a bar chart
from :mod:`.class_pixels`), and reads the counts for mistakes no single file shows: classes
absent from a split, and masks that hold only class 0 and the ignore index — 0/255 binary masks,
whose foreground 255 is ignored and never trained unless ``label_map: {255: 1}`` maps it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .base import DatasetError, SegmentationDataset


@dataclass(frozen=True)
class Problem:
    """One item that training could not use: its index, name, files and what is wrong."""

    index: int | None  # None: a problem of the split, or a file that is no item (an image without a mask)
    name: str
    files: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"[{'-' if self.index is None else self.index}] {self.name}: {self.message}"


@dataclass
class ClassPixels:
    """What a scan of one split counted: ``pixels[k]`` pixels and ``images[k]`` items of class
    ``k`` (``0 … K−1``), ``ignored`` pixels of ``ignore_index``, over ``items`` readable items."""

    names: tuple[str, ...]
    pixels: np.ndarray = field(repr=False)  # (K,) int64
    images: np.ndarray = field(repr=False)  # (K,) int64
    ignored: int = 0
    items: int = 0

    @classmethod
    def empty(cls, names: Sequence[str]) -> ClassPixels:
        k = len(names)
        return cls(tuple(names), np.zeros(k, np.int64), np.zeros(k, np.int64))

    def add(self, counts: np.ndarray) -> None:
        """``counts``: ``(K + 1,)`` pixels of each class, then of the ignore index, of one item."""
        self.pixels += counts[:-1]
        self.images += counts[:-1] > 0
        self.ignored += int(counts[-1])
        self.items += 1

    @property
    def missing(self) -> list[str]:
        """Classes without a single pixel in the split."""
        return [n for n, p in zip(self.names, self.pixels, strict=True) if p == 0]

    def to_dict(self) -> dict[str, Any]:
        labelled = int(self.pixels.sum())
        return {
            "items": self.items,
            "pixels": {n: int(p) for n, p in zip(self.names, self.pixels, strict=True)},
            "share_of_labelled_pixels": {n: (float(p) / labelled if labelled else 0.0)
                                         for n, p in zip(self.names, self.pixels, strict=True)},
            "images_with_class": {n: int(c) for n, c in zip(self.names, self.images, strict=True)},
            "ignored_pixels": self.ignored,
            "missing_classes": self.missing,
        }


def count_classes(mask: torch.Tensor, num_classes: int, ignore_index: int) -> np.ndarray:
    """``(K + 1,)`` int64: pixels of each train id ``0 … K−1``, then of ``ignore_index``, of a
    mask that :func:`check_pair` accepted."""
    values = mask.reshape(-1).to(torch.int64)
    ignored = values == ignore_index
    counts = torch.bincount(values[~ignored], minlength=num_classes)
    return np.append(counts.numpy(), int(ignored.sum()))


def binary_mask_problem(counts: ClassPixels, ignore_index: int, where: str) -> str | None:
    """The split-level finding for masks that hold only class 0 and ``ignore_index`` (0/255
    binary masks read without a ``label_map``), or ``None``."""
    if counts.items == 0 or counts.ignored == 0 or counts.pixels[1:].any() or len(counts.names) < 2:
        return None
    share = counts.ignored / (counts.ignored + int(counts.pixels[0]))
    return (
        f"every mask of {where} holds only class 0 ({counts.names[0]}) and {ignore_index} (ignore_index, "
        f"{share:.0%} of the pixels): they look like 0/255 binary masks, whose foreground would be ignored "
        f"and never trained; map it to class 1 with data.dataset.label_map: {{{ignore_index}: 1}}"
    )


def check_pair(image: torch.Tensor, mask: torch.Tensor, num_classes: int, ignore_index: int) -> str | None:
    """What is wrong with a loaded pair against the dataset contract, or ``None``.

    ``image``: uint8 ``(3, H, W)``; ``mask``: integer ``(H, W)`` of train ids ``0 … K−1`` or
    ``ignore_index``.
    """
    if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        return f"image is {image.dtype} {tuple(image.shape)}, expected uint8 (3, H, W); re-save it as an RGB image"
    if mask.ndim != 2 or mask.is_floating_point():
        return f"mask is {mask.dtype} {tuple(mask.shape)}, expected integer (H, W); save it as a single-channel PNG"
    if tuple(mask.shape) != tuple(image.shape[-2:]):
        return (
            f"mask is {tuple(mask.shape)} but its image is {tuple(image.shape[-2:])} (H, W); "
            "labels must match their image pixel for pixel"
        )
    values = mask.unique()
    bad = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if bad.numel():
        return (
            f"mask holds {bad[:10].tolist()}, which are neither train ids 0..{num_classes - 1} nor "
            f"ignore_index {ignore_index}; fix the label encoding"
        )
    return None


class _Checked(Dataset):
    """Item ``i`` → ``(i, problem message or None, class counts or None)``, so that worker
    processes report problems instead of stopping the scan."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, str | None, np.ndarray | None]:
        classes = self.dataset.classes
        try:
            image, mask = self.dataset.load(index)
        except DatasetError as err:
            return index, str(err), None
        problem = check_pair(image, mask, classes.num_classes, classes.ignore_index)
        if problem is not None:
            return index, problem, None
        return index, None, count_classes(mask, classes.num_classes, classes.ignore_index)


def _as_is(item: Any) -> Any:
    return item


def _files(dataset: SegmentationDataset, index: int) -> tuple[str, ...]:
    paths = (dataset.image_path(index), dataset.label_path(index))
    return tuple(str(p) for p in paths if p is not None)


def scan_dataset(
    dataset: SegmentationDataset, *, num_workers: int = 0, progress: bool = True, description: str = "check-data"
) -> tuple[list[Problem], ClassPixels]:
    """Load every item of ``dataset`` (in ``num_workers`` processes): the problems, in index
    order (an empty list means training can read every item), and the class pixels of the
    items that read.

    ``progress``: a tqdm bar on stderr (shown on a terminal only).
    """
    from tqdm import tqdm

    loader = DataLoader(_Checked(dataset), batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_as_is)
    problems: list[Problem] = []
    counts = ClassPixels.empty(dataset.classes.names)
    bar = tqdm(loader, total=len(dataset), desc=description, unit="item", file=sys.stderr,
               disable=None if progress else True)
    for index, message, item_counts in bar:
        if message is not None:
            problems.append(Problem(int(index), dataset.name(index), _files(dataset, index), message))
        else:
            counts.add(item_counts)
    return sorted(problems, key=lambda p: p.index), counts


def check_dataset(
    dataset: SegmentationDataset, *, num_workers: int = 0, progress: bool = True, description: str = "check-data"
) -> list[Problem]:
    """The problems of :func:`scan_dataset`."""
    return scan_dataset(dataset, num_workers=num_workers, progress=progress, description=description)[0]


def format_problems(problems: Sequence[Problem]) -> str:
    """One block per problem: the item, what is wrong (with the fix), and its files."""
    lines = []
    for problem in problems:
        lines.append(str(problem))
        lines.extend(f"    {path}" for path in problem.files)
    return "\n".join(lines)


@dataclass
class SplitCheck:
    """What ``check-data`` found in one split (``split``: ``train``, ``val`` …, or ``None`` for a
    flat folder read whole because it cannot be split)."""

    split: str | None
    items: int
    problems: list[Problem]
    counts: ClassPixels
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"data.{self.split}" if self.split is not None else "the whole folder"


def check_splits(
    data_cfg: Any, splits: Sequence[str], *, num_workers: int = 0, progress: bool = True
) -> tuple[list[SplitCheck], Any]:
    """Scan each of ``splits`` of a config's ``data`` section as training reads it, listing
    every problem: unreadable items, files without a partner (which the dataset would refuse
    before reading anything), a flat folder that has no train/val partition (then read whole),
    0/255 binary masks. Returns the checks and the label space (:class:`~.base.ClassInfo`)."""
    import inspect

    from .build import build_dataset, dataset_class
    from .folder import UnsplitFolderError

    data_cfg = dict(data_cfg or {})
    dataset_cfg = dict(data_cfg.get("dataset") or {"name": "synthetic"})
    takes_skip = "skip_unpaired" in inspect.signature(dataset_class(dataset_cfg.get("name", "synthetic"))).parameters
    user_skips = bool(dataset_cfg.get("skip_unpaired"))
    if takes_skip:
        dataset_cfg["skip_unpaired"] = True  # list them instead of stopping at them
    checks: list[SplitCheck] = []
    layout: Problem | None = None
    unpaired_seen: set[str] = set()  # the splits of a flat folder share its files
    for split in splits:
        split_cfg = {"split": split, **(data_cfg.get(split) or {})}  # as SegmentationDataModule reads it
        try:
            dataset = build_dataset(dataset_cfg, split_cfg, train=False)
        except UnsplitFolderError as err:
            if layout is not None:
                continue  # the whole folder is read once
            layout = Problem(None, "data.dataset", (), str(err))
            split_cfg["split"], split = None, None
            dataset = build_dataset(dataset_cfg, split_cfg, train=False)
        description = f"data.{split}" if split is not None else "check-data"
        problems, counts = scan_dataset(dataset, num_workers=num_workers, progress=progress, description=description)
        check = SplitCheck(split, len(dataset), problems, counts)
        if split is None and layout is not None:
            check.problems.insert(0, layout)
        for path, missing in getattr(dataset, "unpaired", ()):
            if str(path) in unpaired_seen:
                continue
            unpaired_seen.add(str(path))
            if user_skips:
                check.notes.append(f"left out (skip_unpaired): {path}: {missing}")
            else:
                check.problems.append(Problem(None, Path(path).stem, (str(path),),
                                              f"{missing}; add it, remove the file, or set data.dataset.skip_unpaired: true"))
        binary = binary_mask_problem(counts, dataset.classes.ignore_index, check.where)
        if binary is not None:
            check.problems.append(Problem(None, check.where, (), binary))
        if counts.items and counts.missing:
            check.notes.append(f"{check.where}: no pixel of {', '.join(counts.missing)}")
        checks.append(check)
    return checks, dataset.classes


def format_class_table(checks: Sequence[SplitCheck]) -> str:
    """Each class's share of the labelled pixels (and images holding it) per split, as text."""
    names = checks[0].counts.names
    width = max(len(n) for n in names)
    lines = ["class".ljust(width) + "".join(f"  {c.where:>22}" for c in checks)]
    for k, name in enumerate(names):
        cells = []
        for c in checks:
            labelled = max(int(c.counts.pixels.sum()), 1)
            cells.append(f"{100 * c.counts.pixels[k] / labelled:6.2f}% in {c.counts.images[k]:4d} images")
        lines.append(name.ljust(width) + "".join(f"  {cell:>22}" for cell in cells))
    return "\n".join(lines)
