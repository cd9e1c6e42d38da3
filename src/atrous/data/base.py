"""The dataset contract every dataset of atrous follows.

An item is ``(image, mask)`` after the dataset's joint ``transforms``:

* ``load(i)`` returns the raw pair: ``tv_tensors.Image`` uint8 ``(3, H, W)`` and
  ``tv_tensors.Mask`` uint8 ``(H, W)`` holding *train ids* ``0 … K−1`` and ``ignore_index``
  (int64 only where the label space does not fit uint8: a folder dataset with more than 256
  classes or ``ignore_index`` above 255);
* ``__getitem__(i)`` applies ``transforms(image, mask)`` (see :mod:`atrous.data.transforms`),
  giving a float image ``(3, h, w)`` normalised and the mask ``(h, w)``, still uint8.

Masks stay uint8 through the DataLoader (an eighth of int64's bytes to copy between processes
and to the device); the loss casts them to int64 on the device, the metrics accept them as
they are. Label maps are mapped to train ids by a uint8 look-up table (:mod:`.label_maps`).

``classes`` describes the label space (names, colours, ignore index); ``name(i)`` is a stable id
used to name outputs (e.g. ``frankfurt_000000_000294``); ``image_path(i)`` the source file if any.
Errors about files on disk name the file and say how to fix it (:class:`DatasetError`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..errors import UserError
from .decoded_cache import DecodedCache


class DatasetError(UserError, ValueError):
    """A dataset on disk is missing, mislaid or corrupt; the message names the file and the fix."""


@dataclass(frozen=True, eq=False)
class ClassInfo:
    """A label space: class names in train-id order, their colours and the ignored label."""

    names: tuple[str, ...]
    palette: np.ndarray = field(repr=False)  # (K, 3) uint8, read-only
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def __post_init__(self) -> None:
        if self.palette.shape != (len(self.names), 3):
            raise ValueError(f"palette must be ({len(self.names)}, 3), got {self.palette.shape}")
        palette = np.array(self.palette, dtype=np.uint8)
        palette.flags.writeable = False
        object.__setattr__(self, "palette", palette)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassInfo):
            return NotImplemented
        return (self.names, self.ignore_index) == (other.names, other.ignore_index) and np.array_equal(
            self.palette, other.palette
        )

    def __hash__(self) -> int:
        return hash((self.names, self.ignore_index, self.palette.tobytes()))


Transforms = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[Any, Any]]


class SegmentationDataset(Dataset):
    """Base class; subclasses implement ``__len__``, ``load`` and ``name``."""

    classes: ClassInfo
    # Images of more pixels are refused (None: Pillow's decompression-bomb limit; 0: none);
    # set from the config's ``data.dataset.max_image_pixels`` by ``build_dataset``.
    max_image_pixels: int | None = None
    # Decoded files kept on disk (None: decode every time); set from the config's
    # ``data.dataset.cache_dir`` by ``build_dataset``.
    decoded_cache: DecodedCache | None = None

    def __init__(self, transforms: Transforms | None = None) -> None:
        self.transforms = transforms

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:  # pragma: no cover
        raise NotImplementedError

    def name(self, index: int) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def image_path(self, index: int) -> Path | None:
        return None

    def label_path(self, index: int) -> Path | None:
        """The label file of item ``index`` (``None`` where labels are generated or absent)."""
        return None

    def class_presence(self, index: int) -> np.ndarray:
        """Which classes item ``index`` contains, ``(K,)`` bool. Datasets on disk override this
        to read only the label file (DeepLabv3's bootstrapping scans the whole training set)."""
        _, mask = self.load(index)
        values = mask.unique().numpy()
        present = np.zeros(self.classes.num_classes, dtype=bool)
        present[values[values < self.classes.num_classes]] = True
        return present

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(index)
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image, mask
