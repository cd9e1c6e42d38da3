"""Colour overlays of predictions: image | prediction overlay | ground truth, per sample."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..data.base import SegmentationDataset
from ..data.palettes import overlay
from ..io import atomic_write
from ..models.segmentor import Segmentor


def labelled_row(panels: Sequence[np.ndarray], titles: Sequence[str], min_height: int = 256) -> np.ndarray:
    """Panels side by side under a title strip; small images are enlarged (nearest) to be legible."""
    scale = max(1, -(-min_height // panels[0].shape[0]))
    images = [np.array(Image.fromarray(p).resize((p.shape[1] * scale, p.shape[0] * scale), Image.NEAREST)) for p in panels]
    strip = Image.new("RGB", (sum(i.shape[1] for i in images), 22), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    x = 0
    for image, title in zip(images, titles, strict=True):
        draw.text((x + 6, 5), title, fill=(0, 0, 0))
        x += image.shape[1]
    return np.concatenate([np.array(strip), np.concatenate(images, axis=1)], axis=0)


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
        panel = labelled_row(
            [image, overlay(image, pred, classes.palette), overlay(image, truth.numpy(), classes.palette)],
            ["image", "prediction", "ground truth"],
        )
        path = output / f"{dataset.name(index)}.png"
        atomic_write(path, lambda tmp, a=panel: Image.fromarray(a).save(tmp, format="PNG"))
        written.append(path)
    return written
