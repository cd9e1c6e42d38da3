"""PASCAL VOC 2012 segmentation (Everingham et al. 2010), plus the SBD-augmented ``train_aug`` set.

::

    <VOC2012>/JPEGImages/<id>.jpg
    <VOC2012>/SegmentationClass/<id>.png        palette PNGs, pixel = class index (official)
    <VOC2012>/SegmentationClassAug/<id>.png     grey PNGs, pixel = class index (SBD + official)
    <VOC2012>/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt

``train``/``val``/``trainval`` are the official lists with ``SegmentationClass`` labels;
``train_aug`` is the 10,582-image set of Hariharan et al.'s SBD merged with VOC train (val
images removed) with labels in ``SegmentationClassAug``, the layout DeepLab's scripts produce and
the set DeepLabv3 (§4) trains on. Lines of a list file are either ``<id>`` or DeepLab-style
``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``.

21 classes (background + 20 objects); 255 marks the object borders and is ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from ..errors import ConfigError
from .base import ClassInfo, DatasetError, SegmentationDataset, Transforms
from .decoded_cache import DecodedCache
from .image_files import check_same_size, read_image, read_label_png
from .label_maps import LabelLookup
from .palettes import voc_colormap

IGNORE_INDEX = 255
UNKNOWN = -1

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# split → label folder
SPLITS = {
    "train": "SegmentationClass",
    "val": "SegmentationClass",
    "trainval": "SegmentationClass",
    "train_aug": "SegmentationClassAug",
}
FIX = {
    "SegmentationClass": "download VOCtrainval_11-May-2012.tar from host.robots.ox.ac.uk and untar it",
    "SegmentationClassAug": (
        "build SegmentationClassAug and ImageSets/Segmentation/train_aug.txt from SBD "
        "(benchmark.tgz) with DeepLab's conversion scripts, or unzip a prebuilt SegmentationClassAug.zip"
    ),
}


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The VOC colour map ``(num_colors, 3)`` uint8 (see :func:`.palettes.voc_colormap`)."""
    return voc_colormap(num_colors)


VOC_PALETTE = voc_palette(len(VOC_CLASSES))
CLASSES = ClassInfo(names=VOC_CLASSES, palette=VOC_PALETTE, ignore_index=IGNORE_INDEX)

# Stored label value → train id: the 21 class indices and the 255 border; 21…254 are unknown.
LABEL_LUT = np.full(256, UNKNOWN, dtype=np.int64)
LABEL_LUT[: len(VOC_CLASSES)] = np.arange(len(VOC_CLASSES))
LABEL_LUT[IGNORE_INDEX] = IGNORE_INDEX
_LOOKUP = LabelLookup(LABEL_LUT, unknown=UNKNOWN)


def resolve_root(root: str | os.PathLike) -> Path:
    """The ``VOC2012`` folder under ``root``: tries ``root/VOCdevkit/VOC2012``, ``root/VOC2012``
    then ``root``, and takes the first that holds ``JPEGImages``."""
    root = Path(root)
    candidates = (root / "VOCdevkit" / "VOC2012", root / "VOC2012", root)
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir():
            return candidate
    tried = ", ".join(str(c / "JPEGImages") for c in candidates)
    raise DatasetError(
        f"{root}: no PASCAL VOC 2012 found (looked for {tried}); pass the VOC2012 folder, its "
        f"VOCdevkit parent or the folder holding VOCdevkit ({FIX['SegmentationClass']} there)"
    )


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 semantic segmentation.

    Args:
        root: the ``VOC2012`` folder, its ``VOCdevkit`` parent, or the folder holding ``VOCdevkit``.
        split: ``"train"``, ``"val"``, ``"trainval"`` (official labels) or ``"train_aug"``
            (SBD-augmented, 10,582 images).
        transforms: joint ``transforms(image, mask)`` applied by ``__getitem__``.

    Samples follow the list file's order; the file pairing is checked here, the pixel contents
    when an item is loaded.
    """

    classes = CLASSES

    def __init__(
        self, root: str | os.PathLike, split: str = "train_aug", *, transforms: Transforms | None = None
    ) -> None:
        super().__init__(transforms)
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        self.root = resolve_root(root)
        self.split = split
        self.ids = _read_list(self.root / "ImageSets" / "Segmentation" / f"{split}.txt", SPLITS[split])
        self._image_dir = self.root / "JPEGImages"
        self._label_dir = self.root / SPLITS[split]
        _check_pairs(self.ids, self._image_dir, self._label_dir)

    def __len__(self) -> int:
        return len(self.ids)

    def name(self, index: int) -> str:
        """The image id, e.g. ``2007_000032``."""
        return self.ids[index]

    def image_path(self, index: int) -> Path:
        return self._image_dir / f"{self.ids[index]}.jpg"

    def label_path(self, index: int) -> Path:
        return self._label_dir / f"{self.ids[index]}.png"

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, label_path = self.image_path(index), self.label_path(index)
        image = read_image(image_path, self.max_image_pixels, cache=self.decoded_cache)
        mask = _read_mask(label_path, self.max_image_pixels, self.decoded_cache)
        check_same_size(image, mask, image_path, label_path)
        return image, mask

    def class_presence(self, index: int) -> np.ndarray:
        """Which classes the label map of sample ``index`` contains: bool ``(21,)``.
        Reads only the label file (for DeepLabv3's bootstrapping of hard classes)."""
        values = torch.unique(_read_mask(self.label_path(index), self.max_image_pixels, self.decoded_cache)).numpy()
        present = np.zeros(self.classes.num_classes, dtype=bool)
        present[values[values < self.classes.num_classes]] = True
        return present


def _read_mask(path: Path, max_pixels: int | None = None, cache: DecodedCache | None = None) -> tv_tensors.Mask:
    raw = read_label_png(path, max_pixels, cache)
    if raw.ndim != 2:
        raise DatasetError(
            f"{path}: label map is an RGB image; VOC labels must be palette (SegmentationClass) or "
            f"grey (SegmentationClassAug) PNGs holding class indices, not colours; restore the original file"
        )
    return _LOOKUP(raw, path)


def _read_list(path: Path, label_folder: str) -> list[str]:
    """Image ids of a list file whose lines are ``<id>`` or ``/JPEGImages/<id>.jpg <label>.png``."""
    if not path.is_file():
        raise DatasetError(f"{path}: split list not found; {FIX[label_folder]}")
    ids = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) > 2 or (len(fields) == 2 and not fields[0].endswith(".jpg")):
            raise DatasetError(
                f"{path}:{number}: cannot parse {line.strip()!r}; expected '<id>' or "
                f"'/JPEGImages/<id>.jpg /{label_folder}/<id>.png'"
            )
        ids.append(Path(fields[0]).stem if fields[0].endswith(".jpg") else fields[0])
    if not ids:
        raise DatasetError(f"{path}: split list is empty; {FIX[label_folder]}")
    return ids


def _check_pairs(ids: list[str], image_dir: Path, label_dir: Path) -> None:
    if not label_dir.is_dir():
        raise DatasetError(f"{label_dir}: label folder not found; {FIX[label_dir.name]}")
    images, labels = set(os.listdir(image_dir)), set(os.listdir(label_dir))
    for image_id in ids:
        if f"{image_id}.jpg" not in images:
            raise DatasetError(
                f"{image_dir / (image_id + '.jpg')}: image listed in the split but not found; "
                f"restore JPEGImages or fix the list"
            )
        if f"{image_id}.png" not in labels:
            raise DatasetError(
                f"{image_dir / (image_id + '.jpg')}: no label file {label_dir / (image_id + '.png')}; "
                f"{FIX[label_dir.name]}"
            )
