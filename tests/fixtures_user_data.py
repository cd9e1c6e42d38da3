"""Writers of tiny on-disk datasets (ADE20K SceneParsing, user folders) with known label content.

Labels are built by ``ade20k_raw_label`` / ``folder_label`` so tests can compute the expected
train ids independently of the dataset code; images are random noise.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ADE20K_SPLIT_FOLDERS = {"train": "training", "val": "validation"}

FOLDER_CLASSES = ("background", "road", "car", "person")
FOLDER_COLORS = ((0, 0, 0), (128, 64, 128), (0, 0, 142), (220, 20, 60))
FOLDER_IGNORE_COLOR = (255, 255, 255)
FOLDER_IGNORE_INDEX = 255


def ade20k_raw_label(split: str, index: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``(H, W)`` uint8 raw ADE values: quadrants of 1 (top left), 150 (top right), a random value
    2..149 (bottom left) and 0 "other" (bottom right) — the edges of the value range in every file."""
    h, w = size
    rng = np.random.default_rng([seed, list(ADE20K_SPLIT_FOLDERS).index(split), index])
    label = np.zeros((h, w), dtype=np.uint8)
    label[: h // 2, : w // 2] = 1
    label[: h // 2, w // 2 :] = 150
    label[h // 2 :, : w // 2] = rng.integers(2, 150)
    return label


def write_ade20k(
    root: str | Path, *, n_train: int = 3, n_val: int = 2, size: tuple[int, int] = (24, 32), seed: int = 0
) -> Path:
    """Write ``root/ADEChallengeData2016/{images,annotations}/{training,validation}/…`` as the
    SceneParsing release does (JPEG images, grey 'L' PNG annotations); returns the
    ``ADEChallengeData2016`` folder."""
    base = Path(root) / "ADEChallengeData2016"
    for split, count in (("train", n_train), ("val", n_val)):
        folder = ADE20K_SPLIT_FOLDERS[split]
        (base / "images" / folder).mkdir(parents=True, exist_ok=True)
        (base / "annotations" / folder).mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 99, len(folder)])
        for i in range(count):
            stem = f"ADE_{split}_{i + 1:08d}"
            pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(base / "images" / folder / f"{stem}.jpg", quality=95)
            label = ade20k_raw_label(split, i, size, seed)
            Image.fromarray(label).save(base / "annotations" / folder / f"{stem}.png")
    return base


def folder_label(index: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``(H, W)`` int64 train ids: four vertical stripes holding every class in a random order,
    and an ignored (255) rectangle in the middle."""
    h, w = size
    rng = np.random.default_rng([seed, index])
    order = rng.permutation(len(FOLDER_CLASSES))
    label = np.empty((h, w), dtype=np.int64)
    bounds = np.linspace(0, w, len(order) + 1).astype(int)
    for class_id, left, right in zip(order, bounds[:-1], bounds[1:], strict=True):
        label[:, left:right] = class_id
    label[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3] = FOLDER_IGNORE_INDEX
    return label


def folder_stem(index: int) -> str:
    return f"sample_{index:04d}"


def write_folder(
    root: str | Path,
    *,
    n: int = 4,
    size: tuple[int, int] = (20, 30),
    mode: str = "index",
    split: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a user folder dataset: ``root[/split]/images/sample_0000.{jpg,png}`` (alternating)
    and ``masks/sample_0000.png``, plus ``root/classes.yaml`` (names, colours, ignore colour).

    ``mode="index"`` writes masks alternately as grey 'L' and palette 'P' PNGs (value = class id);
    ``mode="color"`` as RGB PNGs in ``FOLDER_COLORS`` (ignored pixels in ``FOLDER_IGNORE_COLOR``).
    Returns ``root``."""
    if mode not in ("index", "color"):
        raise ValueError(f"mode must be 'index' or 'color', got {mode!r}")
    root = Path(root)
    data_dir = root / split if split is not None else root
    (data_dir / "images").mkdir(parents=True, exist_ok=True)
    (data_dir / "masks").mkdir(parents=True, exist_ok=True)
    write_classes(
        root / "classes.yaml",
        {
            "names": list(FOLDER_CLASSES),
            "colors": [list(c) for c in FOLDER_COLORS],
            "ignore_index": FOLDER_IGNORE_INDEX,
            "ignore_color": list(FOLDER_IGNORE_COLOR),
        },
    )
    colors = np.zeros((256, 3), dtype=np.uint8)  # id → colour, for colour and palette masks
    colors[: len(FOLDER_COLORS)] = FOLDER_COLORS
    colors[FOLDER_IGNORE_INDEX] = FOLDER_IGNORE_COLOR
    rng = np.random.default_rng([seed, 7])
    for i in range(n):
        stem = folder_stem(i)
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data_dir / "images" / f"{stem}.{'jpg' if i % 2 == 0 else 'png'}")
        label = folder_label(i, size, seed)
        mask_path = data_dir / "masks" / f"{stem}.png"
        if mode == "color":
            Image.fromarray(colors[label]).save(mask_path)
        elif i % 2 == 0:
            Image.fromarray(label.astype(np.uint8)).save(mask_path)
        else:  # a full 256-entry palette, as VOC masks have: PIL remaps indices past a short one
            indexed = Image.frombytes("P", (size[1], size[0]), label.astype(np.uint8).tobytes())
            indexed.putpalette(colors.flatten().tolist())
            indexed.save(mask_path)
    return root


def write_classes(path: str | Path, content: dict, *, fmt: str | None = None) -> Path:
    """Write a classes file as YAML or JSON (``fmt`` defaults to the suffix)."""
    path = Path(path)
    fmt = fmt or ("json" if path.suffix == ".json" else "yaml")
    if fmt == "json":
        path.write_text(json.dumps(content))
    else:
        path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def hash_tree(root: str | Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (relative path → digest), to check nothing was modified."""
    root = Path(root)
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
