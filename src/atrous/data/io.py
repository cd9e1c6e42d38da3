"""Reading images and label maps with errors that name the file and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision import tv_tensors

from .base import DatasetError


def read_image(path: Path) -> tv_tensors.Image:
    """Decode an image file as RGB → ``tv_tensors.Image`` uint8 ``(3, H, W)``.

    PIL decodes (torchvision 0.29 deprecates its own decoders in favour of torchcodec).
    """
    try:
        with Image.open(path) as img:
            array = np.asarray(img.convert("RGB"))
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: image file not found") from err
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DatasetError(f"{path}: cannot decode this image ({err}); re-export or remove the file") from err
    return tv_tensors.Image(torch.from_numpy(array.copy()).permute(2, 0, 1))


def read_label_png(path: Path) -> np.ndarray:
    """Read a label PNG as stored: ``(H, W)`` integers (palette index or grey value), or
    ``(H, W, 3)`` uint8 for colour-coded masks. PIL keeps palette indices (torchvision would
    convert palette PNGs to RGB)."""
    try:
        with Image.open(path) as img:
            if img.mode in ("P", "L", "I", "I;16"):
                return np.array(img)
            if img.mode in ("RGB", "RGBA"):
                return np.array(img.convert("RGB"))
            raise DatasetError(f"{path}: label image mode {img.mode!r} is not supported; save it as an index PNG")
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: label file not found") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: cannot decode this label map ({err}); re-export or remove the file") from err


def map_labels(raw: np.ndarray, lut: np.ndarray, path: Path, unknown: int = -1) -> tv_tensors.Mask:
    """Map raw label values through ``lut`` (value → train id); values the lut marks ``unknown``
    or beyond its end raise a :class:`DatasetError` naming the file and the values."""
    raw = raw.astype(np.int64, copy=False)
    if raw.size and (raw.min() < 0 or raw.max() >= len(lut)):
        bad = np.unique(raw[(raw < 0) | (raw >= len(lut))])[:10]
        raise DatasetError(f"{path}: unknown label values {bad.tolist()} (valid: 0..{len(lut) - 1})")
    mapped = lut[raw]
    if (mapped == unknown).any():
        bad = np.unique(raw[mapped == unknown])[:10]
        raise DatasetError(f"{path}: unknown label values {bad.tolist()}; check the dataset's label encoding")
    return tv_tensors.Mask(torch.from_numpy(mapped))


def check_same_size(image: tv_tensors.Image, mask: tv_tensors.Mask, image_path: Path, mask_path: Path) -> None:
    if tuple(image.shape[-2:]) != tuple(mask.shape[-2:]):
        raise DatasetError(
            f"{mask_path}: label map is {tuple(mask.shape[-2:])} but its image {image_path} is "
            f"{tuple(image.shape[-2:])} (H, W); labels must match their image pixel for pixel"
        )
