"""``atrous check-data``: read every item of a split up front and report every problem at once.

Training stops at the first bad file, hours in, with one message; this scan reads each item with
the dataset's own :meth:`~atrous.data.base.SegmentationDataset.load` — exactly what training
reads, before any transform — and collects, for each item that fails, the files and what is
wrong: an unreadable or corrupt image, a label map of another size than its image, label values
that are not classes, a label image mode the dataset cannot read. On top of ``load``'s own checks
it verifies the contract of :mod:`atrous.data.base` (uint8 ``(3, H, W)`` image, ``(H, W)`` mask
of train ids ``0 … K−1`` or ``ignore_index``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from .base import DatasetError, SegmentationDataset


@dataclass(frozen=True)
class Problem:
    """One item that training could not use: its index, name, files and what is wrong."""

    index: int
    name: str
    files: tuple[str, ...]
    message: str

    def __str__(self) -> str:
        return f"[{self.index}] {self.name}: {self.message}"


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
    """Item ``i`` → ``(i, problem message or None)``, so that worker processes report
    problems instead of stopping the scan."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, str | None]:
        classes = self.dataset.classes
        try:
            image, mask = self.dataset.load(index)
        except DatasetError as err:
            return index, str(err)
        return index, check_pair(image, mask, classes.num_classes, classes.ignore_index)


def _as_is(item: Any) -> Any:
    return item


def _files(dataset: SegmentationDataset, index: int) -> tuple[str, ...]:
    paths = (dataset.image_path(index), dataset.label_path(index))
    return tuple(str(p) for p in paths if p is not None)


def check_dataset(
    dataset: SegmentationDataset, *, num_workers: int = 0, progress: bool = True, description: str = "check-data"
) -> list[Problem]:
    """Load every item of ``dataset`` (in ``num_workers`` processes) and return the problems,
    in index order; an empty list means training can read every item.

    ``progress``: a tqdm bar on stderr (shown on a terminal only).
    """
    from tqdm import tqdm

    loader = DataLoader(_Checked(dataset), batch_size=None, shuffle=False, num_workers=num_workers, collate_fn=_as_is)
    problems: list[Problem] = []
    bar = tqdm(loader, total=len(dataset), desc=description, unit="item", file=sys.stderr,
               disable=None if progress else True)
    for index, message in bar:
        if message is not None:
            problems.append(Problem(int(index), dataset.name(index), _files(dataset, index), message))
    return sorted(problems, key=lambda p: p.index)


def format_problems(problems: Sequence[Problem]) -> str:
    """One block per problem: the item, what is wrong (with the fix), and its files."""
    lines = []
    for problem in problems:
        lines.append(str(problem))
        lines.extend(f"    {path}" for path in problem.files)
    return "\n".join(lines)
