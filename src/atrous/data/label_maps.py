"""Stored label values → train ids through a 256-entry uint8 look-up table.

Label PNGs hold uint8 values (Cityscapes label ids, VOC class indices, ADE20K's 0 = other) and
train ids fit uint8 too (``0 … K−1`` and ``ignore_index`` 255), so the mapping never widens the
array. The table is applied by Pillow's 8-bit ``Image.point`` (:func:`take_uint8`), 2.3–2.7×
faster than ``np.take``, which casts the indices to int64 first (``atrous benchmark-data``
reports the ratio). Unknown values are found by a sentinel train id that no known value maps to, one
comparison over the mapped frame; only a frame that has some pays for the exact list of values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from .base import DatasetError
from .image_files import pixel_array

TABLE_SIZE = 256


class LabelLookup:
    """Maps raw label values ``0 … 255`` to uint8 train ids.

    Args:
        table: ``(n,)`` integers, ``n ≤ 256``: value → train id (``0 … 255``) or ``unknown``;
            values at or beyond ``n`` are unknown.
        unknown: the entry that marks a value absent from the dataset's label encoding.
    """

    def __init__(self, table: np.ndarray, unknown: int = -1) -> None:
        table = np.asarray(table, dtype=np.int64)
        if table.ndim != 1 or len(table) > TABLE_SIZE:
            raise ValueError(f"a label table has at most {TABLE_SIZE} entries, got shape {table.shape}")
        known = np.zeros(TABLE_SIZE, dtype=bool)
        known[: len(table)] = table != unknown
        train_ids = table[table != unknown]
        if ((train_ids < 0) | (train_ids > 255)).any():
            raise ValueError(f"train ids must fit uint8 (0..255), got {sorted(set(train_ids.tolist()))}")
        unused = sorted(set(range(TABLE_SIZE)) - set(train_ids.tolist()))
        # A train id no known value maps to marks the unknown ones (all 256 used: all are known).
        self.sentinel: int | None = unused[-1] if unused else None
        lut = np.full(TABLE_SIZE, self.sentinel or 0, dtype=np.uint8)
        lut[known] = np.pad(table, (0, TABLE_SIZE - len(table)))[known]
        lut.flags.writeable = known.flags.writeable = False
        self.table, self.known, self.size = lut, known, len(table)

    def __call__(self, raw: np.ndarray, path: Path) -> tv_tensors.Mask:
        """``raw`` ``(H, W)`` integers (uint8, or wider from a 16-bit PNG) → ``tv_tensors.Mask``
        uint8 ``(H, W)``; unknown values raise a :class:`DatasetError` naming ``path`` and them."""
        if raw.dtype != np.uint8:
            if raw.size and (raw.min() < 0 or raw.max() >= TABLE_SIZE):
                wide = raw.astype(np.int64)
                outside = (wide < 0) | (wide >= TABLE_SIZE) | ~self.known[np.clip(wide, 0, TABLE_SIZE - 1)]
                raise self._unknown(path, np.unique(wide[outside]))
            raw = raw.astype(np.uint8)
        mapped = take_uint8(self.table, raw)
        if self.sentinel is not None and (mapped == self.sentinel).any():
            present = np.bincount(raw.ravel(), minlength=TABLE_SIZE) > 0
            bad = np.flatnonzero(present & ~self.known)
            if len(bad):
                raise self._unknown(path, bad)
        return tv_tensors.Mask(torch.from_numpy(mapped))

    def _unknown(self, path: Path, values: np.ndarray) -> DatasetError:
        beyond = f" (valid: 0..{self.size - 1})" if (values < 0).any() or (values >= self.size).any() else ""
        return DatasetError(
            f"{path}: unknown label values {values[:10].tolist()}{beyond}; check the dataset's label encoding"
        )


def take_uint8(table: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.take(table, values)`` for a 256-entry uint8 ``table`` and uint8 ``values`` of any
    shape: Pillow's 8-bit point operation on the values viewed as a grey image (no copy in), then
    one copy out, writable. Non-contiguous or empty ``values`` go through ``np.take``."""
    if values.size == 0 or not values.flags.c_contiguous or values.ndim == 0:
        return np.take(table, values)
    rows = values.reshape(-1, values.shape[-1])
    grey = Image.frombuffer("L", (rows.shape[1], rows.shape[0]), rows, "raw", "L", 0, 1)
    return pixel_array(grey.point(table.tobytes())).reshape(values.shape)


class ValueMap:
    """A user's ``label_map``: stored mask values → class ids, every other value kept as it is.

    ``{255: 1}`` reads 0/255 binary masks as background 0 and foreground 1 (255 is otherwise the
    ignore index, so the foreground would never be trained); ``{38: 1, 75: 2}`` reads masks saved
    as grey images of a colour palette.

    Args:
        mapping: ``{stored value: class id or ignore_index}``, stored values ``>= 0``.
        num_classes: ``K``; targets must be ``0 … K−1`` or ``ignore_index``.
        ignore_index: the label that is not scored.
        where: the config key, for errors.
    """

    def __init__(self, mapping: dict, num_classes: int, ignore_index: int, where: str = "data.dataset.label_map") -> None:
        from ..config import ConfigError

        if not isinstance(mapping, dict) or not all(_is_count(k) and _is_count(v) for k, v in mapping.items()):
            raise ConfigError(
                f"{where}: expected stored value → class id pairs of non-negative integers, e.g. {{255: 1}}, got {mapping!r}"
            )
        bad = sorted(v for v in mapping.values() if v >= num_classes and v != ignore_index)
        if bad:
            raise ConfigError(
                f"{where}: maps onto {bad}, which are neither class ids 0..{num_classes - 1} nor ignore_index {ignore_index}"
            )
        self.mapping = {int(k): int(v) for k, v in mapping.items()}
        # uint8 masks (the common case) through a 256-entry table; wider masks value by value.
        self.table = np.arange(TABLE_SIZE, dtype=np.int64)
        for value, target in self.mapping.items():
            if value < TABLE_SIZE:
                self.table[value] = target

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """``(H, W)`` stored values → ``(H, W)`` int64 with the mapped values replaced."""
        if raw.dtype == np.uint8:
            return np.take(self.table, raw)
        out = raw.astype(np.int64, copy=True)
        for value, target in self.mapping.items():
            out[raw == value] = target
        return out


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
