"""How many Cityscapes training samples one DataLoader worker prepares per second.

Frames are Cityscapes-sized (1024×2048) PNGs in Cityscapes' on-disk layout, rendered once into
a temporary folder from the built-in synthetic streets (flat regions, edges and pixel noise:
about 3 MB per frame, a little more than a real ``leftImg8bit`` PNG's 2–2.5 MB), or read from a
real Cityscapes root. A sample is what :class:`atrous.data.cityscapes.Cityscapes` returns:
PNG decode of image and label map, label-id → train-id mapping, then a transform pipeline:

* ``augment``: random scale 0.5–2, random crop 512×1024 (padded), horizontal flip, colour
  jitter 0.2, ImageNet normalisation (the usual Cityscapes training recipe);
* ``denseaspp_report``: resize to 512×1024 and normalise (the DenseASPP report's protocol, the
  ``denseaspp_report/*`` configs).

Measured in the main process with one torch thread, as a DataLoader worker runs: the median
milliseconds of each stage (image decode, label decode, label-id → train-id mapping, the
transforms) and of a whole sample, and the samples per second one worker makes, decoding and
reading the decoded frames from a :class:`atrous.data.decoded_cache.DecodedCache` (in a
temporary folder, filled first). Alternatives run interleaved with ours on each sample, and
their ratio is the median of per-sample ratios: the samples with and without the cache (same
random draws), torchvision's deprecated ``decode_png`` against PIL, ``np.take`` against the
label look-up, ``v2.ColorJitter`` against atrous' on the same crops. The comparison
with a training step's appetite (images/s from ``atrous benchmark``'s ``train`` phase) says how
many workers keep the model fed.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from ..data.cityscapes import TRAINID_LOOKUPS, Cityscapes, trainid_to_labelid
from ..data.color_jitter import ColorJitter
from ..data.decoded_cache import DecodedCache
from ..data.image_files import read_image, read_label_png
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
    "denseaspp_report": {"resize": (512, 1024), "normalize": "imagenet"},
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


def _interleaved(fns: dict[str, Callable[[int], Any]], count: int, repeats: int) -> dict[str, list[float]]:
    """Seconds of each ``fn(i)``, the alternatives run one after another on each sample (so a
    change of machine load touches all alike); each call after ``torch.manual_seed(i)``."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for i in range(count):
            for name, fn in fns.items():
                torch.manual_seed(i)
                start = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - start)
    return times


def _median_ms(seconds: list[float], digits: int = 1) -> float:
    return round(statistics.median(seconds) * 1e3, digits)


def _ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """The median of per-sample ratios ``slow / fast``."""
    return round(statistics.median(a / b for a, b in zip(times[slow], times[fast], strict=True)), 2)


def benchmark_data(
    root: str | Path | None = None,
    *,
    frames: int = 4,
    repeats: int = 2,
    pipelines: tuple[str, ...] = tuple(PIPELINES),
    train_images_per_s: float | None = None,
) -> dict[str, Any]:
    """Milliseconds per stage and samples per second of one worker for each pipeline, without
    and with the decoded-frame cache (module docstring).

    Args:
        root: a Cityscapes root with a ``train`` split; ``None`` writes ``frames`` synthetic
            frames into a temporary folder.
        frames: how many frames to write (ignored with ``root``).
        repeats: passes over the frames (each pass draws new augmentations); medians over all
            samples.
        pipelines: names of :data:`PIPELINES`.
        train_images_per_s: what a training step consumes; adds ``workers_needed``.
    """
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise InputError(f"unknown pipeline(s) {unknown}; choose from {list(PIPELINES)}")
    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker gets
    try:
        with tempfile.TemporaryDirectory(prefix="atrous-data-bench-") as tmp:
            cache = DecodedCache(Path(tmp) / "cache")
            if root is not None:
                return _measure(Path(root), cache, repeats, pipelines, train_images_per_s, synthetic=False)
            write_cityscapes_frames(Path(tmp) / "frames", frames)
            return _measure(Path(tmp) / "frames", cache, repeats, pipelines, train_images_per_s, synthetic=True)
    finally:
        torch.set_num_threads(previous)


def _measure(
    root: Path, cache: DecodedCache, repeats: int, pipelines: tuple[str, ...], train_images_per_s: float | None,
    *, synthetic: bool,
) -> dict[str, Any]:
    dataset = Cityscapes(root, "train")
    cached = Cityscapes(root, "train")
    cached.decoded_cache = cache
    count = min(len(dataset), 16)
    images = [dataset.image_path(i) for i in range(count)]
    labels = [dataset.label_path(i) for i in range(count)]
    frame_mb = statistics.fmean(path.stat().st_size for path in images) / 1e6
    raws = [read_label_png(path) for path in labels]
    for i in range(count):
        cached.load(i)  # fills the cache
    lookup = TRAINID_LOOKUPS["19"]
    decode = _interleaved({
        "image_decode": lambda i: read_image(images[i]),
        "decode_png": lambda i: _torchvision_decode_png(images[i]),
        "label_decode": lambda i: read_label_png(labels[i]),
        "label_mapping": lambda i: lookup(raws[i], labels[i]),
        "np_take": lambda i: np.take(lookup.table, raws[i]),
        "decode": dataset.load,  # both decodes + label mapping
        "cached_decode": cached.load,
    }, count, repeats)
    report: dict[str, Any] = {
        "frames": count,
        "frame_size": list(dataset.load(0)[0].shape[-2:]),
        "frame_png_mb": round(frame_mb, 2),
        "synthetic_frames": synthetic,
        "stages_ms": {
            "image_decode": _median_ms(decode["image_decode"]),
            "label_decode": _median_ms(decode["label_decode"]),
            "label_mapping": _median_ms(decode["label_mapping"], digits=2),
        },
        "decode_ms": _median_ms(decode["decode"]),
        "cached_decode_ms": _median_ms(decode["cached_decode"]),
        "peers": {  # how much longer the alternative takes, same frames, timed interleaved
            "torchvision decode_png / PIL image decode": _ratio(decode, "decode_png", "image_decode"),
            "np.take / Pillow point label mapping": _ratio(decode, "np_take", "label_mapping"),
        },
        "pipelines": {},
    }
    loaded = [dataset.load(i) for i in range(count)]
    for name in pipelines:
        options = PIPELINES[name]
        transforms = build_transforms(train=True, **options)
        dataset.transforms = cached.transforms = transforms
        steps = {"transforms": lambda i: transforms(*loaded[i]),  # noqa: B023
                 "sample": dataset.__getitem__, "cached_sample": cached.__getitem__}
        jitter = next((step for step in transforms.transforms if isinstance(step, ColorJitter)), None)
        if jitter is not None:
            crops = [v2.Compose(transforms.transforms[: transforms.transforms.index(jitter)])(*pair)[0] for pair in loaded]
            peer = v2.ColorJitter(jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
            steps |= {"jitter": lambda i: jitter(crops[i]), "v2_jitter": lambda i: peer(crops[i])}  # noqa: B023
        times = _interleaved(steps, count, repeats)
        sample_s, cached_s = (statistics.median(times[key]) for key in ("sample", "cached_sample"))
        entry = {
            "transforms": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "sample_ms": round(sample_s * 1e3, 1),
            "transform_ms": _median_ms(times["transforms"]),
            "images_per_s_per_worker": round(1 / sample_s, 3),
            "cached_sample_ms": round(cached_s * 1e3, 1),
            "cached_images_per_s_per_worker": round(1 / cached_s, 3),
            "cache_speedup": _ratio(times, "sample", "cached_sample"),
        }
        if jitter is not None:
            entry["color_jitter_ms"] = _median_ms(times["jitter"])
            entry["v2_color_jitter_ratio"] = _ratio(times, "v2_jitter", "jitter")
        if train_images_per_s:
            entry["workers_needed"] = math.ceil(train_images_per_s * sample_s)
            entry["cached_workers_needed"] = math.ceil(train_images_per_s * cached_s)
        report["pipelines"][name] = entry
    if train_images_per_s:
        report["train_images_per_s"] = train_images_per_s
    return report


def _torchvision_decode_png(path: Path) -> torch.Tensor:
    """torchvision's PNG decoder, deprecated in 0.29 (a comparison only: atrous decodes with PIL)."""
    from torchvision.io import decode_png, read_file

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_png(read_file(str(path)))


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
    stages = report["stages_ms"]
    lines = [
        f"{report['frames']} {kind} frames {h}×{w}, {report['frame_png_mb']:.1f} MB PNG; one worker (1 thread)",
        f"decode image {stages['image_decode']:.0f} ms, label map {stages['label_decode']:.0f} ms; label mapping "
        f"{stages['label_mapping']:.1f} ms; decode + mapping {report['decode_ms']:.0f} ms/sample, "
        f"{report['cached_decode_ms']:.1f} ms from the decoded-frame cache",
        "peers (their time / ours, interleaved): " + ", ".join(f"{k} {v:.2f}x" for k, v in report["peers"].items()),
        f"{'pipeline':<18}{'ms/sample':>10}{'transforms ms':>15}{'img/s/worker':>14}{'workers needed':>16}"
        f"{'cached ms':>11}{'img/s/worker':>14}{'workers needed':>16}",
    ]
    for name, entry in report["pipelines"].items():
        need, cached_need = entry.get("workers_needed", "-"), entry.get("cached_workers_needed", "-")
        lines.append(f"{name:<18}{entry['sample_ms']:>10.0f}{entry['transform_ms']:>15.0f}"
                     f"{entry['images_per_s_per_worker']:>14.1f}{need!s:>16}{entry['cached_sample_ms']:>11.0f}"
                     f"{entry['cached_images_per_s_per_worker']:>14.1f}{cached_need!s:>16}")
    for name, entry in report["pipelines"].items():
        if "color_jitter_ms" in entry:
            lines.append(f"{name}: colour jitter {entry['color_jitter_ms']:.1f} ms; v2.ColorJitter takes "
                         f"{entry['v2_color_jitter_ratio']:.2f}x as long")
    if "train_images_per_s" in report:
        lines.append(f"training consumes {report['train_images_per_s']:.2f} img/s ({train_source or 'given'})")
    return "\n".join(lines)
