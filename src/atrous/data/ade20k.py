"""ADE20K SceneParsing (the 150-class MIT Scene Parsing Benchmark, ``ADEChallengeData2016``).

Layout, as ``ADEChallengeData2016.zip`` unzips::

    ADEChallengeData2016/
      images/{training,validation}/ADE_train_00000001.jpg
      annotations/{training,validation}/ADE_train_00000001.png   # grey PNG, 0 = other, 1..150 = class

Label values are mapped with the usual "reduce zero label" convention (DenseASPP and DeepLabv3
train on it the same way): value ``v`` in ``1..150`` → train id ``v − 1``, value 0 ("other
objects", not one of the 150) → ``ignore_index`` 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision import tv_tensors

from ..errors import ConfigError
from .base import ClassInfo, DatasetError, SegmentationDataset, Transforms
from .folder import generated_palette
from .image_files import check_same_size, read_image, read_label_png
from .label_maps import LabelLookup

# The first name of each row of objectInfo150.csv (SceneParsing devkit), in train-id order.
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
# Generated, not official (the release ships none): the PASCAL VOC bit-interleaved colour map,
# entries 1..150, so every class has a distinct colour and black stays free for "ignored".
ADE20K_PALETTE = generated_palette(len(ADE20K_CLASSES))
ADE20K_PALETTE.setflags(write=False)

_SPLITS = {"train": "training", "val": "validation"}
_FOLDER = "ADEChallengeData2016"
_IGNORE_INDEX = 255

# Raw value → train id: 0 → ignore, v → v − 1. Values beyond 150 fall off the end of the lut and
# the lookup reports them as unknown.
_LUT = np.concatenate([[_IGNORE_INDEX], np.arange(len(ADE20K_CLASSES))]).astype(np.int64)
_LOOKUP = LabelLookup(_LUT)


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing, 150 classes (Zhou et al., CVPR 2017; DenseASPP §4 and DeepLabv3+
    report it as a second benchmark).

    Args:
        root: the folder holding ``ADEChallengeData2016``, or ``ADEChallengeData2016`` itself.
        split: ``"train"`` (``training``, 20 210 images) or ``"val"`` (``validation``, 2 000).
        transforms: joint ``(image, mask)`` transforms applied by ``__getitem__``.
    """

    classes = ClassInfo(ADE20K_CLASSES, ADE20K_PALETTE, _IGNORE_INDEX)

    def __init__(self, root: str | Path, split: str = "train", *, transforms: Transforms | None = None) -> None:
        super().__init__(transforms)
        if split not in _SPLITS:
            raise ConfigError(f"ADE20K split must be one of {sorted(_SPLITS)}, got {split!r}")
        self.split = split
        self.root = _dataset_root(Path(root))
        folder = _SPLITS[split]
        image_dir = self.root / "images" / folder
        label_dir = self.root / "annotations" / folder
        for directory in (image_dir, label_dir):
            if not directory.is_dir():
                raise DatasetError(f"{directory}: folder not found; {_layout_hint(self.root)}")

        self.images = sorted(
            p for p in image_dir.iterdir() if p.suffix.lower() == ".jpg" and not p.name.startswith(".")
        )
        if not self.images:
            raise DatasetError(f"{image_dir}: no .jpg images found; {_layout_hint(self.root)}")
        label_names = {p.name for p in label_dir.iterdir()}
        self.labels = [label_dir / f"{p.stem}.png" for p in self.images]
        missing = [(i, m) for i, m in zip(self.images, self.labels, strict=True) if m.name not in label_names]
        if missing:
            examples = "; ".join(f"{i} has no {m}" for i, m in missing[:5])
            raise DatasetError(
                f"{len(missing)} of {len(self.images)} images in {image_dir} have no annotation: "
                f"{examples}; re-extract ADEChallengeData2016.zip"
            )

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return self.images[index].stem

    def image_path(self, index: int) -> Path:
        return self.images[index]

    def label_path(self, index: int) -> Path:
        return self.labels[index]

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, label_path = self.images[index], self.labels[index]
        image = read_image(image_path, self.max_image_pixels, cache=self.decoded_cache)
        raw = read_label_png(label_path, self.max_image_pixels, self.decoded_cache)
        if raw.ndim != 2:
            raise DatasetError(
                f"{label_path}: colour label image; ADEChallengeData2016 annotations are grey PNGs "
                "of class values 0..150 (the colour-coded *_seg.png of the full ADE20K release "
                "are not supported)"
            )
        mask = _LOOKUP(raw, label_path)
        check_same_size(image, mask, image_path, label_path)
        return image, mask


def _dataset_root(root: Path) -> Path:
    """``root`` or ``root/ADEChallengeData2016``, whichever holds ``images/`` and ``annotations/``."""
    expected = root if root.name == _FOLDER else root / _FOLDER
    if not root.is_dir():
        raise DatasetError(f"{root}: ADE20K root folder not found; {_layout_hint(expected)}")
    if (root / _FOLDER).is_dir():
        return root / _FOLDER
    if (root / "images").is_dir() and (root / "annotations").is_dir():
        return root
    raise DatasetError(
        f"{root}: holds neither {_FOLDER}/ nor images/ and annotations/; {_layout_hint(expected)}"
    )


def _layout_hint(base: Path) -> str:
    """Where the files should be, ``base`` being the ``ADEChallengeData2016`` folder."""
    return (
        f"expected {base}/images/training/ADE_train_00000001.jpg with "
        f"{base}/annotations/training/ADE_train_00000001.png (and the same for validation); "
        f"ADEChallengeData2016.zip (MIT Scene Parsing) unzips to this layout"
    )
