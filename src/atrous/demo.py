"""``make demo`` until the training pipeline lands: run the small CPU model on a generated image.

The model is *untrained* (random weights, no downloads): the prediction shows that the
pipeline runs end to end and what it writes, not a segmentation quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .config import CONFIG_ROOT
from .data.palettes import colorize
from .io import atomic_write
from .models import build_model

DEMO_CONFIG = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"


def street_image(height: int = 256, width: int = 512, seed: int = 0) -> np.ndarray:
    """A simple street-like picture: sky, buildings, road in perspective. ``(H, W, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), dtype=np.float32)
    horizon = height // 2
    img[:horizon] = (135, 170, 210)
    for x0 in range(0, width, width // 8):
        top = int(rng.integers(height // 8, horizon))
        img[top:horizon, x0 : x0 + width // 10] = rng.integers(60, 140, size=3)
    ys = np.arange(horizon, height)[:, None]
    xs = np.arange(width)[None, :]
    half = (ys - horizon + 1) / (height - horizon) * width * 0.6
    road = np.abs(xs - width / 2) < half
    img[horizon:][road] = (90, 90, 95)
    img[horizon:][~road] = (110, 150, 70)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def run_demo(output: Path) -> int:
    model = build_model(DEMO_CONFIG).eval()
    image = street_image()
    x = torch.from_numpy(image).permute(2, 0, 1).float().div(255).unsqueeze(0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        labels = model((x - mean) / std).argmax(1)[0].numpy()
    colours = colorize(labels)
    overlay = (0.5 * image + 0.5 * colours).astype(np.uint8)
    for name, array in (("image.png", image), ("prediction.png", colours), ("overlay.png", overlay)):
        atomic_write(output / name, lambda p, a=array: Image.fromarray(a).save(p, format="PNG"))
    print(f"atrous demo: ran {DEMO_CONFIG.relative_to(CONFIG_ROOT.parent)} on a generated 256x512 street image.")
    print("NOTE: the model is UNTRAINED (random weights); training on the built-in synthetic streets")
    print("      arrives with the data/training milestone. This run checks the pipeline end to end.")
    print(f"Wrote {output}/image.png, prediction.png and overlay.png")
    return 0
