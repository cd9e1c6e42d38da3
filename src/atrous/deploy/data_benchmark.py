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

Measured in the main process with one torch thread, as a DataLoader worker runs. The peer is
the former pipeline, timed in the same run and interleaved with the current one (same frames,
same random draws, rounds alternating which goes first): label mapping through an int64 table
(:func:`atrous.data.image_files.map_labels`) and random scaling of the whole frame before the crop
(``build_transforms(crop_first=False)``). Each pipeline reports the median of the per-round
ratios former / current. The comparison with a training step's appetite (images/s from
``atrous benchmark``'s ``train`` phase) says how many workers keep the model fed.
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

from ..data.base import DatasetError
from ..data.cityscapes import (
    LABELID_TO_TRAINID,
    TRAINID_LOOKUPS,
    UNKNOWN,
    Cityscapes,
    trainid_to_labelid,
)
from ..data.image_files import map_labels, read_image, read_label_png
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


class FormerCityscapes(Cityscapes):
    """The peer: Cityscapes as atrous read it before uint8 masks, label ids mapped through an
    int64 table (``raw.astype(int64)`` then ``lut[raw]``), int64 masks."""

    def _read_mask(self, path: Path):  # type: ignore[override]
        raw = read_label_png(path)
        if raw.ndim != 2:
            raise DatasetError(f"{path}: expected a single-channel label-id PNG (*_labelIds.png)")
        return map_labels(raw, LABELID_TO_TRAINID[self.variant], path, unknown=UNKNOWN)


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
    rounds: int = 3,
    pipelines: tuple[str, ...] = tuple(PIPELINES),
    train_images_per_s: float | None = None,
) -> dict[str, Any]:
    """Samples per second of one worker for each pipeline, now and before (module docstring).

    Args:
        root: a Cityscapes root with a ``train`` split; ``None`` writes ``frames`` synthetic
            frames into a temporary folder.
        frames: how many frames to write (ignored with ``root``).
        repeats: passes over the frames per round (each pass draws new augmentations).
        rounds: interleaved rounds of current and former pipeline; medians over all samples,
            the speed-up is the median of the per-round ratios.
        pipelines: names of :data:`PIPELINES`.
        train_images_per_s: what a training step consumes; adds ``workers_needed``.
    """
    unknown = sorted(set(pipelines) - set(PIPELINES))
    if unknown:
        raise InputError(f"unknown pipeline(s) {unknown}; choose from {list(PIPELINES)}")
    if rounds < 1 or repeats < 1:
        raise InputError(f"rounds and repeats must be >= 1, got {rounds} and {repeats}")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # what a DataLoader worker gets
    try:
        if root is not None:
            return _measure(Path(root), repeats, rounds, pipelines, train_images_per_s, synthetic=False)
        with tempfile.TemporaryDirectory(prefix="atrous-data-bench-") as tmp:
            write_cityscapes_frames(tmp, frames)
            return _measure(Path(tmp), repeats, rounds, pipelines, train_images_per_s, synthetic=True)
    finally:
        torch.set_num_threads(previous)


def _interleaved(current: Any, former: Any, count: int, repeats: int, rounds: int) -> dict[str, float]:
    """Median seconds per call of ``current(i)`` and ``former(i)``, and the median per-round
    ratio former / current. Both see the same torch seed each round (the same augmentations);
    odd rounds run the former first."""
    times: dict[str, list[float]] = {"current": [], "former": []}
    ratios = []
    for round_index in range(rounds):
        order = [("current", current), ("former", former)]
        medians = {}
        for name, fn in order[:: -1 if round_index % 2 else 1]:
            torch.manual_seed(round_index)
            seconds = _per_sample_seconds(fn, count, repeats)
            times[name] += seconds
            medians[name] = statistics.median(seconds)
        ratios.append(medians["former"] / medians["current"])
    return {
        "current_s": statistics.median(times["current"]),
        "former_s": statistics.median(times["former"]),
        "speedup": statistics.median(ratios),
    }


def _measure(
    root: Path, repeats: int, rounds: int, pipelines: tuple[str, ...], train_images_per_s: float | None, *, synthetic: bool
) -> dict[str, Any]:
    current, former = Cityscapes(root, "train"), FormerCityscapes(root, "train")
    count = min(len(current), 16)
    frame_mb = statistics.fmean(current.image_path(i).stat().st_size for i in range(count)) / 1e6
    labels = [current.label_path(i) for i in range(count)]
    raws = [read_label_png(path) for path in labels]
    image_s = statistics.median(_per_sample_seconds(lambda i: read_image(current.image_path(i)), count, repeats * rounds))
    label_read_s = statistics.median(_per_sample_seconds(lambda i: read_label_png(labels[i]), count, repeats * rounds))
    mapping = _interleaved(
        lambda i: TRAINID_LOOKUPS["19"](raws[i], labels[i]),
        lambda i: map_labels(raws[i], LABELID_TO_TRAINID["19"], labels[i], unknown=UNKNOWN),
        count, repeats, rounds,
    )
    loading = _interleaved(current.load, former.load, count, repeats, rounds)  # decode + mapping
    report: dict[str, Any] = {
        "frames": count,
        "frame_size": list(current.load(0)[0].shape[-2:]),
        "frame_png_mb": round(frame_mb, 2),
        "synthetic_frames": synthetic,
        "rounds": rounds,
        "stages_ms": {
            "image_decode": round(image_s * 1e3, 1),
            "label_decode": round(label_read_s * 1e3, 1),
            "label_mapping": round(mapping["current_s"] * 1e3, 2),
            "label_mapping_former": round(mapping["former_s"] * 1e3, 2),
        },
        "decode_ms": round(loading["current_s"] * 1e3, 1),
        "decode_ms_former": round(loading["former_s"] * 1e3, 1),
        "pipelines": {},
    }
    loaded = {"current": [current.load(i) for i in range(count)], "former": [former.load(i) for i in range(count)]}
    for name in pipelines:
        options = PIPELINES[name]
        now, before = build_transforms(train=True, **options), build_transforms(train=True, crop_first=False, **options)
        transforms = _interleaved(
            lambda i: now(*loaded["current"][i]), lambda i: before(*loaded["former"][i]), count, repeats, rounds  # noqa: B023
        )
        timing = _interleaved(
            Cityscapes(root, "train", transforms=now).__getitem__,
            FormerCityscapes(root, "train", transforms=before).__getitem__,
            count, repeats, rounds,
        )
        sample_s = timing["current_s"]
        entry = {
            "transforms": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "sample_ms": round(sample_s * 1e3, 1),
            "transform_ms": round(transforms["current_s"] * 1e3, 1),
            "images_per_s_per_worker": round(1 / sample_s, 3),
            "former_sample_ms": round(timing["former_s"] * 1e3, 1),
            "former_transform_ms": round(transforms["former_s"] * 1e3, 1),
            "transform_speedup": round(transforms["speedup"], 2),
            "former_images_per_s_per_worker": round(1 / timing["former_s"], 3),
            "speedup": round(timing["speedup"], 2),
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
    stages = report["stages_ms"]
    lines = [
        f"{report['frames']} {kind} frames {h}×{w}, {report['frame_png_mb']:.1f} MB PNG; one worker (1 thread); "
        f"now / before, interleaved over {report['rounds']} rounds",
        f"decode image {stages['image_decode']:.0f} ms, label map {stages['label_decode']:.0f} ms; label mapping "
        f"{stages['label_mapping']:.1f} / {stages['label_mapping_former']:.1f} ms; "
        f"decode + mapping {report['decode_ms']:.0f} / {report['decode_ms_former']:.0f} ms/sample",
        f"{'pipeline':<10}{'ms/sample':>14}{'transforms ms':>16}{'img/s/worker':>16}{'speed-up':>10}{'workers needed':>16}",
    ]
    for name, entry in report["pipelines"].items():
        need = entry.get("workers_needed", "-")
        ms = f"{entry['sample_ms']:.0f} / {entry['former_sample_ms']:.0f}"
        transform = f"{entry['transform_ms']:.0f} / {entry['former_transform_ms']:.0f}"
        rate = f"{entry['images_per_s_per_worker']:.1f} / {entry['former_images_per_s_per_worker']:.1f}"
        lines.append(f"{name:<10}{ms:>14}{transform:>16}{rate:>16}{entry['speedup']:>9.2f}×{need!s:>16}")
    if "train_images_per_s" in report:
        lines.append(f"training consumes {report['train_images_per_s']:.2f} img/s ({train_source or 'given'})")
    return "\n".join(lines)
