"""How many Cityscapes training samples one DataLoader worker prepares per second.

Frames are Cityscapes-sized (1024×2048) PNGs in Cityscapes' on-disk layout, rendered once into
a temporary folder from the built-in synthetic streets (flat regions, edges and pixel noise:
about 3 MB per frame, a little more than a real ``leftImg8bit`` PNG's 2–2.5 MB), or read from a
real Cityscapes root. A sample is what :class:`atrous.data.cityscapes.Cityscapes` returns:
PNG decode of image and label map, label-id → train-id mapping, then a transform pipeline:

* ``augment``: random scale 0.5–2, random crop 512×1024 (padded), horizontal flip, colour
  jitter 0.2, ImageNet normalisation (the usual Cityscapes training recipe);
* ``seed``: resize to 512×1024 and normalise (the seed report's protocol, ``seed/*``).

Measured in the main process with one torch thread, as a DataLoader worker runs. The
comparison with a training step's appetite (images/s from ``atrous benchmark``'s ``train``
phase) says how many workers keep the model fed.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.cityscapes import Cityscapes, trainid_to_labelid
from ..data.synthetic import SyntheticStreets
from ..data.transforms import build_transforms
from ..errors import InputError

CITYSCAPES_SIZE = (1024, 2048)
PIPELINES: dict[str, dict[str, Any]] = {
    "augment": {
        "scale_range": (0.5, 2.0),
        "crop_size": (512, 1024),
        "hflip": True,
        "color_jitter": 0.2,
        "normalize": "imagenet",
    },
    "seed": {"resize": (512, 1024), "normalize": "imagenet"},
}


def write_cityscapes_frames(root: str | Path, count: int = 4, size: tuple[int, int] = CITYSCAPES_SIZE) -> Path:
    """Write ``count`` synthetic street frames as a Cityscapes ``train`` split under ``root``.

    ``leftImg8bit/train/synth/synth_000000_{i:06d}_leftImg8bit.png`` (RGB) and
    ``gtFine/train/synth/..._gtFine_labelIds.png`` (official label ids).
    """
    root = Path(root)
    images = root / "leftImg8bit" / "train" / "synth"
    labels = root / "gtFine" / "train" / "synth"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    streets = SyntheticStreets("train", length=count, image_size=size)
    for i in range(count):
        image, mask = streets.load(i)
        stem = f"synth_000000_{i:06d}"
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(images / f"{stem}_leftImg8bit.png")
        label_ids = trainid_to_labelid[np.minimum(mask.numpy(), 18)]
        Image.fromarray(label_ids).save(labels / f"{stem}_gtFine_labelIds.png")
    return root


def _per_sample_seconds(fn: Any, count: int, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        for i in range(count):
            start = time.perf_counter()
            fn(i)
            times.append(time.perf_counter() - start)
    return times


def benchmark_data(
    root: str | Path | None = None,
    *,
    frames: int = 4,
    repeats: int = 2,
    pipelines: tuple[str, ...] = tuple(PIPELINES),
    train_images_per_s: float | None = None,
) -> dict[str, Any]:
    """Samples per second of one worker for each pipeline (see the module docstring).

    Args:
        root: a Cityscapes root with a ``train`` split; ``None`` writes ``frames`` synthetic
            frames into a temporary folder.
        frames: how many frames to write (ignored with ``root``).
        repeats: passes over the frames (each pass draws new augmentations).
        pipelines: names of :data:`PIPELINES`.
        train_images_per_s: what a training step consumes; adds ``workers_needed``.
    """
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise InputError(f"unknown pipeline(s) {unknown}; choose from {list(PIPELINES)}")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker gets
    try:
        if root is not None:
            return _measure(Path(root), repeats, pipelines, train_images_per_s, synthetic=False)
        with tempfile.TemporaryDirectory(prefix="atrous-data-bench-") as tmp:
            write_cityscapes_frames(tmp, frames)
            return _measure(Path(tmp), repeats, pipelines, train_images_per_s, synthetic=True)
    finally:
        torch.set_num_threads(previous)


def _measure(root: Path, repeats: int, pipelines: tuple[str, ...], train_images_per_s: float | None, *, synthetic: bool) -> dict[str, Any]:
    decode = Cityscapes(root, "train")
    count = min(len(decode), 16)
    frame_mb = statistics.fmean(decode.image_path(i).stat().st_size for i in range(count)) / 1e6
    torch.manual_seed(0)
    decode_s = statistics.median(_per_sample_seconds(decode.load, count, repeats))
    report: dict[str, Any] = {
        "frames": count,
        "frame_size": list(decode.load(0)[0].shape[-2:]),
        "frame_png_mb": round(frame_mb, 2),
        "synthetic_frames": synthetic,
        "decode_ms": round(decode_s * 1e3, 1),
        "pipelines": {},
    }
    for name in pipelines:
        dataset = Cityscapes(root, "train", transforms=build_transforms(train=True, **PIPELINES[name]))
        sample_s = statistics.median(_per_sample_seconds(dataset.__getitem__, count, repeats))
        entry = {
            "transforms": {k: list(v) if isinstance(v, tuple) else v for k, v in PIPELINES[name].items()},
            "sample_ms": round(sample_s * 1e3, 1),
            "transform_ms": round((sample_s - decode_s) * 1e3, 1),
            "images_per_s_per_worker": round(1 / sample_s, 3),
        }
        if train_images_per_s:
            entry["workers_needed"] = math.ceil(train_images_per_s * sample_s)
        report["pipelines"][name] = entry
    if train_images_per_s:
        report["train_images_per_s"] = train_images_per_s
    return report


def train_images_per_s_from(results: str | Path) -> tuple[float, str]:
    """The first model's training throughput in an ``atrous benchmark`` JSON, and a description."""
    import json

    report = json.loads(Path(results).read_text())
    try:
        entry = report["models"][0]
        train = entry["train"]
    except (KeyError, IndexError) as err:
        raise InputError(f"{results}: no training phase in this benchmark report (run atrous benchmark with the train phase)") from err
    size = "×".join(map(str, train["image_size"]))
    return float(train["latency"]["images_per_s"]), f"{entry['name']}, batch {train['batch']} at {size}"


def format_data_report(report: dict[str, Any], train_source: str | None = None) -> str:
    h, w = report["frame_size"]
    kind = "synthetic" if report["synthetic_frames"] else "Cityscapes"
    lines = [
        f"{report['frames']} {kind} frames {h}×{w}, {report['frame_png_mb']:.1f} MB PNG; one worker (1 thread); "
        f"decode + label mapping {report['decode_ms']:.0f} ms/sample",
        f"{'pipeline':<10}{'ms/sample':>11}{'transforms ms':>15}{'img/s/worker':>14}{'workers needed':>16}",
    ]
    for name, entry in report["pipelines"].items():
        need = entry.get("workers_needed", "-")
        lines.append(
            f"{name:<10}{entry['sample_ms']:>11.0f}{entry['transform_ms']:>15.0f}{entry['images_per_s_per_worker']:>14.2f}{need!s:>16}"
        )
    if "train_images_per_s" in report:
        lines.append(f"training consumes {report['train_images_per_s']:.2f} img/s ({train_source or 'given'})")
    return "\n".join(lines)
