"""Cityscapes (Cordts et al. 2016) in its official on-disk layout.

::

    <root>/leftImg8bit/{train,val,test}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
    <root>/leftImg8bit/train_extra/<city>/..._leftImg8bit.png             (coarse=True)
    <root>/gtCoarse/train_extra/<city>/..._gtCoarse_labelIds.png          (coarse=True)

as unzipped from ``leftImg8bit_trainvaltest.zip``, ``gtFine_trainvaltest.zip`` (and
``leftImg8bit_trainextra.zip``, ``gtCoarse.zip``) of cityscapes-dataset.com. Label ids are mapped
to train ids with the official table (:mod:`.cityscapes_labels`, cityscapesScripts'); the
``_instanceIds`` maps are read by :meth:`Cityscapes.load_instances` for the iIoU scores of
``atrous validate``; the ``_color`` and ``_polygons.json`` files are not used.

Variants of the label space:

* ``"19"`` — the 19 evaluation classes; every other label (void, parking, rail track, …) is
  ignored (255). This is what the benchmark scores.
* ``"20"`` — the DenseASPP report's version: those void pixels form a 20th class ``background``
  (train id 19, colour (0, 0, 0)); the ignore index stays 255 but no labelled pixel maps to it.

The ``test`` split has no usable labels (the public gtFine test maps are void everywhere), so it
yields images with an all-ignore (255) mask; use it for predictions only.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torchvision import tv_tensors

from ..errors import ConfigError
from .base import ClassInfo, DatasetError, SegmentationDataset, Transforms
from .cityscapes_labels import LABELS
from .image_files import check_same_size, read_image, read_label_png
from .label_maps import LabelLookup
from .palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE

SPLITS = ("train", "val", "test")
VARIANTS = ("19", "20")
IGNORE_INDEX = 255
UNKNOWN = -1  # marks label ids absent from the official table in the look-up tables below

IMAGE_SUFFIX = "_leftImg8bit.png"
DOWNLOAD_HINT = {
    "leftImg8bit": "download leftImg8bit_trainvaltest.zip from cityscapes-dataset.com and unzip it into",
    "gtFine": "download gtFine_trainvaltest.zip from cityscapes-dataset.com and unzip it into",
    "leftImg8bit/train_extra": "download leftImg8bit_trainextra.zip from cityscapes-dataset.com and unzip it into",
    "gtCoarse": "download gtCoarse.zip from cityscapes-dataset.com and unzip it into",
}

CLASSES_19 = ClassInfo(names=CITYSCAPES_CLASSES, palette=CITYSCAPES_PALETTE, ignore_index=IGNORE_INDEX)
CLASSES_20 = ClassInfo(
    names=(*CITYSCAPES_CLASSES, "background"),
    palette=np.concatenate([CITYSCAPES_PALETTE, np.zeros((1, 3), np.uint8)]),
    ignore_index=IGNORE_INDEX,
)
CLASSES = {"19": CLASSES_19, "20": CLASSES_20}  # by variant


def _labelid_to_trainid(void: int) -> np.ndarray:
    """256-entry look-up table label id → train id from the official table: evaluated classes
    keep their train id, the rest (train id 255 or −1) become ``void``; ids not in the table
    (and the license plate's −1, which no uint8 PNG can hold) are ``UNKNOWN``."""
    lut = np.full(256, UNKNOWN, dtype=np.int64)
    for label in LABELS:
        if 0 <= label.id < 256:
            lut[label.id] = label.train_id if 0 <= label.train_id < IGNORE_INDEX else void
    return lut


LABELID_TO_TRAINID = {"19": _labelid_to_trainid(void=IGNORE_INDEX), "20": _labelid_to_trainid(void=19)}
# The same tables as uint8 look-ups (what load() uses; see atrous.data.label_maps).
TRAINID_LOOKUPS = {variant: LabelLookup(table, unknown=UNKNOWN) for variant, table in LABELID_TO_TRAINID.items()}

# Train id (0…18) → official label id, to write the label-id PNGs the benchmark evaluates.
trainid_to_labelid: np.ndarray = np.array(
    [next(label.id for label in LABELS if label.train_id == t) for t in range(19)],
    dtype=np.uint8,
)


class Cityscapes(SegmentationDataset):
    """Cityscapes fine annotations (optionally + the coarse ``train_extra`` set).

    Args:
        root: the folder holding ``leftImg8bit/`` and ``gtFine/`` (and ``gtCoarse/``).
        split: ``"train"``, ``"val"`` or ``"test"`` (images only, all-ignore masks).
        variant: ``"19"`` evaluation classes with void ignored, or ``"20"`` with void as
            class 19 ``background`` (see the module docstring).
        coarse: with ``split="train"``, append the ~20k ``train_extra`` images with their
            ``gtCoarse`` labels (DeepLabv3's Cityscapes experiments train on them, then on the fine set).
        transforms: joint ``transforms(image, mask)`` applied by ``__getitem__``.

    Samples are ordered by city then file name (fine ones first, then ``train_extra``); the
    file pairing is checked here, the pixel contents when an item is loaded.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        *,
        variant: str | int = "19",
        coarse: bool = False,
        transforms: Transforms | None = None,
    ) -> None:
        super().__init__(transforms)
        if split not in SPLITS:
            raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
        variant = str(variant)
        if variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if coarse and split != "train":
            raise ConfigError(f"coarse=True adds train_extra to the 'train' split only, got split={split!r}")
        self.root = Path(root)
        self.split = split
        self.variant = variant
        self.coarse = coarse
        self.classes = CLASSES[variant]
        self._lookup = TRAINID_LOOKUPS[variant]
        if not self.root.is_dir():
            raise DatasetError(
                f"{self.root}: Cityscapes root not found; expected a folder holding leftImg8bit/ "
                f"and gtFine/ (unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip "
                f"from cityscapes-dataset.com into it)"
            )

        labels = None if split == "test" else ("gtFine", "gtFine_labelIds.png")
        self._samples = _list_pairs(self.root, split, labels)
        if coarse:
            self._samples += _list_pairs(self.root, "train_extra", ("gtCoarse", "gtCoarse_labelIds.png"))
        if not self._samples:
            raise DatasetError(
                f"{self.root / 'leftImg8bit' / split}: no *{IMAGE_SUFFIX} images found; expected "
                f"<root>/leftImg8bit/{split}/<city>/<city>_<seq>_<frame>{IMAGE_SUFFIX}"
            )

    def __len__(self) -> int:
        return len(self._samples)

    def name(self, index: int) -> str:
        """``<city>_<seq>_<frame>``, e.g. ``frankfurt_000000_000294``."""
        return self._samples[index][0].name[: -len(IMAGE_SUFFIX)]

    def image_path(self, index: int) -> Path:
        return self._samples[index][0]

    def label_path(self, index: int) -> Path | None:
        """The label-id PNG of sample ``index`` (``None`` for the test split)."""
        return self._samples[index][1]

    def instance_path(self, index: int) -> Path | None:
        """gtFine's ``_instanceIds.png`` beside the label map of sample ``index`` (the iIoU scores
        need it); ``None`` for the test split."""
        label_path = self._samples[index][1]
        if label_path is None or not label_path.name.endswith("_gtFine_labelIds.png"):
            return None
        return label_path.with_name(label_path.name.replace("_gtFine_labelIds.png", "_gtFine_instanceIds.png"))

    def load_instances(self, index: int) -> torch.Tensor:
        """Instance ids ``(H, W)`` int64 as gtFine stores them: ``label id × 1000 + n`` on
        instances of classes with instances, the label id elsewhere."""
        path = self.instance_path(index)
        if path is None or not path.is_file():
            raise DatasetError(
                f"{path or self._samples[index][0]}: no gtFine _instanceIds.png for this image; the iIoU "
                "scores need it: unpack all of gtFine_trainvaltest.zip (or evaluate with labels: resized "
                "on another dataset)"
            )
        raw = read_label_png(path)
        if raw.ndim != 2:
            raise DatasetError(f"{path}: expected a single-channel instance-id PNG, got shape {raw.shape}")
        return torch.from_numpy(raw.astype(np.int64))

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, label_path = self._samples[index]
        image = read_image(image_path, self.max_image_pixels, cache=self.decoded_cache)
        if label_path is None:  # test split: no labels, everything ignored
            mask = torch.full(tuple(image.shape[-2:]), IGNORE_INDEX, dtype=torch.uint8)
            return image, tv_tensors.Mask(mask)
        mask = self._read_mask(label_path)
        check_same_size(image, mask, image_path, label_path)
        return image, mask

    def class_presence(self, index: int) -> np.ndarray:
        """Which classes the label map of sample ``index`` contains: bool ``(num_classes,)``.
        Reads only the label file (for DeepLabv3's bootstrapping of hard classes)."""
        label_path = self._samples[index][1]
        present = np.zeros(self.classes.num_classes, dtype=bool)
        if label_path is not None:
            values = torch.unique(self._read_mask(label_path)).numpy()
            present[values[values < self.classes.num_classes]] = True
        return present

    def _read_mask(self, path: Path) -> tv_tensors.Mask:
        raw = read_label_png(path, self.max_image_pixels, self.decoded_cache)
        if raw.ndim != 2:
            raise DatasetError(
                f"{path}: expected a single-channel label-id PNG (*_labelIds.png), got shape "
                f"{raw.shape}; do not point at the *_color.png files"
            )
        return self._lookup(raw, path)


def _list_pairs(
    root: Path, split: str, labels: tuple[str, str] | None
) -> list[tuple[Path, Path | None]]:
    """``(image, label)`` paths of one split folder, sorted by city then file name.
    ``labels`` is ``(label folder, label file suffix)``, or ``None`` for images only."""
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        hint = DOWNLOAD_HINT["leftImg8bit/train_extra" if split == "train_extra" else "leftImg8bit"]
        raise DatasetError(
            f"{image_dir}: image folder not found; expected "
            f"<root>/leftImg8bit/{split}/<city>/*{IMAGE_SUFFIX}; {hint} {root}"
        )
    cities = sorted(p for p in image_dir.iterdir() if p.is_dir())
    if labels is None:
        return [(image, None) for city in cities for image in _images(city)]

    label_folder, label_suffix = labels
    label_root = root / label_folder / split
    if not label_root.is_dir():
        raise DatasetError(
            f"{label_root}: label folder not found; expected "
            f"<root>/{label_folder}/{split}/<city>/*_{label_suffix}; {DOWNLOAD_HINT[label_folder]} {root}"
        )
    pairs: list[tuple[Path, Path | None]] = []
    for city in cities:
        label_dir = label_root / city.name
        present = set(os.listdir(label_dir)) if label_dir.is_dir() else set()
        for image in _images(city):
            label = label_dir / f"{image.name[: -len(IMAGE_SUFFIX)]}_{label_suffix}"
            if label.name not in present:
                raise DatasetError(
                    f"{image}: no label file {label}; restore it from the {label_folder} archive "
                    f"or remove the image"
                )
            pairs.append((image, label))
    return pairs


def _images(city: Path) -> list[Path]:
    return sorted(p for p in city.iterdir() if p.name.endswith(IMAGE_SUFFIX))
