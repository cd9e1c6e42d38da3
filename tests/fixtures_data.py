"""Tiny Cityscapes and PASCAL VOC datasets in their true on-disk layouts, written with PIL.

Label maps are 4×4-pixel blocks of known values (read them back with PIL to know the truth):
the first label map of every Cityscapes city cycles through all 34 label ids 0…33 (void ids
0…6 included; the license plate's −1 cannot be stored in a uint8 PNG), the others use four ids
drawn at random. VOC label maps hold a few class rectangles with a 255 border, on background.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

CITYSCAPES_LABEL_IDS = np.arange(34)  # every id of cityscapesScripts' table that fits in uint8
EXTRA_CITIES = ("augsburg", "bad-honnef")  # train_extra cities (hyphenated like the real one)
VOC_NUM_CLASSES = 21


def _blocks(ids: np.ndarray, size: tuple[int, int], block: int = 4) -> np.ndarray:
    """``(H, W)`` uint8 map of ``block``-sized squares taking ``ids`` in turn, row by row."""
    height, width = size
    rows, cols = -(-height // block), -(-width // block)
    grid = np.resize(ids, rows * cols).reshape(rows, cols).astype(np.uint8)
    return np.kron(grid, np.ones((block, block), np.uint8))[:height, :width]


def cityscapes_instance_ids(label_ids: np.ndarray, block: int = 4) -> np.ndarray:
    """``(H, W)`` uint16 instance map of an ``(H, W)`` label-id map in gtFine's layout: pixels of
    classes without instances (road, sky, …) hold their label id; each ``block``-sized square of
    a class with instances (person, car, …) is one instance, ``label id × 1000 + its number``."""
    height, width = label_ids.shape
    rows, cols = np.indices((height, width))
    number = (rows // block) * -(-width // block) + cols // block
    assert number.max() < 1000, "more squares than gtFine's instance numbering holds"
    things = np.isin(label_ids, [i for i, label in id2label.items() if i >= 0 and label.hasInstances])
    return np.where(things, label_ids.astype(np.uint16) * 1000 + number, label_ids).astype(np.uint16)


def _random_image(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def write_cityscapes(
    root: Path,
    *,
    cities: tuple[str, ...] = ("aachen", "bochum"),
    per_city: int = 2,
    size: tuple[int, int] = (32, 64),
    splits: tuple[str, ...] = ("train", "val", "test"),
    coarse: bool = False,
    seed: int = 0,
) -> Path:
    """Write ``leftImg8bit/`` and ``gtFine/`` (``_labelIds``, ``_color``, ``_instanceIds``,
    ``_polygons.json``) for ``splits`` under ``root``; with ``coarse`` also
    ``leftImg8bit/train_extra`` + ``gtCoarse/{train,train_extra}`` for :data:`EXTRA_CITIES`.
    Test-split label maps are void (id 0) as in the public release. ``size`` is (H, W).
    Returns ``root``."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    jobs = [(split, "gtFine", cities) for split in splits]
    if coarse:
        jobs += [("train", "gtCoarse", cities), ("train_extra", "gtCoarse", EXTRA_CITIES)]
    for split, label_folder, split_cities in jobs:
        write_images = label_folder == "gtFine" or split == "train_extra"
        for city in split_cities:
            image_dir = root / "leftImg8bit" / split / city
            label_dir = root / label_folder / split / city
            if write_images:
                image_dir.mkdir(parents=True, exist_ok=True)
            label_dir.mkdir(parents=True, exist_ok=True)
            for k in range(per_city):
                stem = f"{city}_{k // 2:06d}_{19 * (k + 1):06d}"
                if write_images:
                    _random_image(rng, size).save(image_dir / f"{stem}_leftImg8bit.png")
                if split == "test":
                    ids = np.zeros(1, np.uint8)
                elif k == 0:
                    ids = rng.permutation(CITYSCAPES_LABEL_IDS)
                else:
                    ids = rng.choice(CITYSCAPES_LABEL_IDS, size=4, replace=False)
                label_ids = _blocks(ids, size)
                prefix = f"{stem}_{label_folder}"
                Image.fromarray(label_ids).save(label_dir / f"{prefix}_labelIds.png")
                Image.fromarray(np.zeros((*size, 3), np.uint8)).save(label_dir / f"{prefix}_color.png")
                Image.fromarray(cityscapes_instance_ids(label_ids)).save(label_dir / f"{prefix}_instanceIds.png")
                polygons = {"imgHeight": size[0], "imgWidth": size[1], "objects": []}
                (label_dir / f"{prefix}_polygons.json").write_text(json.dumps(polygons))
    return root


def voc_palette_bytes() -> list[int]:
    """The VOC colour map (bit-interleaving formula), flat for ``Image.putpalette``."""
    flat = []
    for index in range(256):
        code, rgb = index, [0, 0, 0]
        for bit in range(7, -1, -1):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << bit
            code >>= 3
        flat += rgb
    return flat


def _voc_label(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Background with two class rectangles, each with a 1-pixel 255 border."""
    height, width = size
    label = np.zeros(size, np.uint8)
    for cls in rng.choice(np.arange(1, VOC_NUM_CLASSES), size=2, replace=False):
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        bottom, right = top + rng.integers(6, 9), left + rng.integers(6, 9)
        label[top:bottom, left:right] = 255
        label[top + 1 : bottom - 1, left + 1 : right - 1] = cls
    return label


def write_voc(
    root: Path,
    *,
    n: int = 6,
    size: tuple[int, int] = (40, 50),
    aug: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``root/VOCdevkit/VOC2012`` with ``n`` official images (``SegmentationClass`` palette
    PNGs; ``train`` = first half, ``val`` = rest, ``trainval`` = all, one id a line); with
    ``aug`` also ``n // 2`` SBD-only images, grey ``SegmentationClassAug`` PNGs for all and a
    DeepLab-style ``train_aug.txt`` (train + SBD-only). ``size`` is (H, W). Returns the
    ``VOC2012`` folder."""
    voc = Path(root) / "VOCdevkit" / "VOC2012"
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    official = [f"{2007 + i % 5}_{i:06d}" for i in range(n)]
    sbd_only = [f"2008_{100000 + i:06d}" for i in range(n // 2)] if aug else []
    palette = voc_palette_bytes()
    for image_id in official + sbd_only:
        _random_image(rng, size).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
        label = _voc_label(rng, size)
        if image_id in official:
            png = Image.fromarray(label)
            png.putpalette(palette)  # 'L' → 'P': the pixels stay class indices
            png.save(voc / "SegmentationClass" / f"{image_id}.png")
        if aug:
            (voc / "SegmentationClassAug").mkdir(exist_ok=True)
            Image.fromarray(label).save(voc / "SegmentationClassAug" / f"{image_id}.png")
    lists = voc / "ImageSets" / "Segmentation"
    train, val = official[: n // 2], official[n // 2 :]
    for split, ids in (("train", train), ("val", val), ("trainval", official)):
        (lists / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if aug:
        lines = [f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in train + sbd_only]
        (lists / "train_aug.txt").write_text("".join(lines))
    return voc
