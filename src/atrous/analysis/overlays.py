"""Colour overlays of predictions: image | prediction overlay | ground truth, per sample."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.base import SegmentationDataset
from ..data.palettes import colorize
from ..io import atomic_write
from ..models.segmentor import Segmentor


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.55, ignore_index: int = 255) -> np.ndarray:
    """Blend class colours over an ``(H, W, 3)`` uint8 image; ignored pixels stay as they are."""
    colours = colorize(labels, palette).astype(np.float32)
    out = image.astype(np.float32)
    labelled = labels != ignore_index
    out[labelled] = (1 - alpha) * out[labelled] + alpha * colours[labelled]
    return out.astype(np.uint8)


@torch.no_grad()
def save_overlays(model: Segmentor, dataset: SegmentationDataset, indices: Sequence[int], output: Path) -> list[Path]:
    """For each index write ``<name>.png``: the image, the prediction over it, and the ground
    truth over it, side by side. ``dataset.transforms`` must be the evaluation transforms."""
    model.eval()
    classes = dataset.classes
    written = []
    for index in indices:
        raw, truth = dataset.load(index)
        x, _ = dataset[index]
        pred = model(x.unsqueeze(0)).argmax(1)[0].numpy()
        image = raw.permute(1, 2, 0).numpy()
        if pred.shape != image.shape[:2]:  # evaluation transforms resized the input
            pred = np.array(Image.fromarray(pred.astype(np.uint8)).resize(image.shape[1::-1], Image.NEAREST))
        panel = np.concatenate(
            [image, overlay(image, pred, classes.palette), overlay(image, truth.numpy(), classes.palette)], axis=1
        )
        path = output / f"{dataset.name(index)}.png"
        atomic_write(path, lambda tmp, a=panel: Image.fromarray(a).save(tmp, format="PNG"))
        written.append(path)
    return written
