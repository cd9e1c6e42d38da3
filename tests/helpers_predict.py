"""A tiny trained-looking checkpoint for ``atrous predict`` tests (ResNet-18 + FCN, output
stride 8, 3 classes, random weights), saved in the layout ``atrous fit`` writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atrous.cli import main
from atrous.models import build_model

STRIDE = 8


def tiny_checkpoint(folder: Path) -> Path:
    cfg = {
        "model": {
            "num_classes": 3,
            "backbone": {"name": "resnet18", "output_stride": STRIDE, "pretrained": False},
            "head": {"name": "fcn"},
        },
        "data": {"dataset": {"name": "synthetic"}},
    }
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    path = folder / "tiny.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": cfg, "class_names": ["a", "b", "c"], "ignore_index": 255}}, path)
    return path


def predict(checkpoint: Path, *args: str) -> int:
    return main(["predict", "--checkpoint", str(checkpoint), "--no-progress", "--device", "cpu", "--precision", "fp32", *args])


def random_image(path: Path, size: tuple[int, int] = (16, 24), seed: int = 0) -> np.ndarray:
    """Write a random RGB PNG of ``size`` (H, W); returns its pixels ``(H, W, 3)`` uint8."""
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return image


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative POSIX path → contents)."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
