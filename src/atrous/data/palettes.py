"""Class names and colours, and colouring label maps (colour maps, overlays on images)."""

from __future__ import annotations

import numpy as np

from .cityscapes_labels import EVALUATED

# Cityscapes' 19 evaluation classes in train-id order, with their official colours.
CITYSCAPES_CLASSES = tuple(label.name for label in EVALUATED)
CITYSCAPES_PALETTE = np.array([label.color for label in EVALUATED], dtype=np.uint8)


def voc_colormap(num_colors: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map ``(num_colors, 3)`` uint8 (VOCdevkit's ``VOClabelcolormap.m``):
    the bits of the index, three at a time, are spread over R, G, B from the most significant
    bit down. Distinct for up to 2²⁴ colours.

    >>> voc_colormap(4).tolist()
    [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    ids = np.arange(num_colors, dtype=np.int64)
    palette = np.zeros((num_colors, 3), dtype=np.int64)
    for bit in range(8):
        for channel in range(3):
            palette[:, channel] |= ((ids >> (3 * bit + channel)) & 1) << (7 - bit)
    return palette.astype(np.uint8)


def colorize(labels: np.ndarray, palette: np.ndarray = CITYSCAPES_PALETTE, ignore_color=(0, 0, 0)) -> np.ndarray:
    """``(H, W)`` integer labels → ``(H, W, 3)`` uint8 colours; ids outside the palette get ``ignore_color``."""
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    out[:] = ignore_color
    valid = (labels >= 0) & (labels < len(palette))
    out[valid] = palette[labels[valid]]
    return out


OVERLAY_BAND_PIXELS = 1 << 20  # pixels blended at a time


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.55, ignore_index: int = 255) -> np.ndarray:
    """Blend class colours over an ``(H, W, 3)`` uint8 image; ignored pixels stay as they are.
    Blended in float32 a band of rows at a time, so a large image needs no float copy of itself."""
    out = np.empty_like(image, dtype=np.uint8)
    band = max(1, OVERLAY_BAND_PIXELS // max(1, image.shape[1]))
    for top in range(0, image.shape[0], band):
        rows = slice(top, top + band)
        colours = colorize(labels[rows], palette).astype(np.float32)
        blended = image[rows].astype(np.float32)
        labelled = labels[rows] != ignore_index
        blended[labelled] = (1 - alpha) * blended[labelled] + alpha * colours[labelled]
        out[rows] = blended.astype(np.uint8)
    return out
