"""Users' own data: a folder of images, a folder of masks and a small classes file.

Two layouts. Split subfolders (``root/<split>/images`` and ``root/<split>/masks``)::

    root/
      classes.yaml                      # names: [background, road, car]  (also classes.json)
      train/images/0001.jpg             # .png .jpg .jpeg .bmp .tif .tiff .webp .ppm .pgm
      train/masks/0001.png              # same stem; index PNG (value = class id) or colour PNG
      val/images/…  val/masks/…

or one flat folder (``root/images`` + ``root/masks``) that ``val_fraction`` partitions into train
and val, seeded by ``split_seed`` (:mod:`.folder_splits`). A flat folder read for a named split
without ``val_fraction`` is refused: train and val would be the same images. ``split=None``
reads the whole flat folder (``check-data``, ``predict``-style use).

The classes file::

    names: [background, road, car]       # required, one per class id 0..K-1
    colors: [[0, 0, 0], [128, 64, 128], [0, 0, 142]]   # optional; needed for colour masks
    ignore_index: 255                    # optional (default 255); index value not scored
    ignore_color: [255, 255, 255]        # optional; colour of ignored pixels in colour masks

Masks are read per file as stored: grey ('L') or palette ('P') PNGs hold class ids directly (or
values that ``label_map`` maps to class ids, e.g. ``{255: 1}`` for 0/255 binary masks); RGB PNGs
are mapped through ``colors`` (exact matches only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torchvision import tv_tensors

from ..errors import ConfigError
from .base import ClassInfo, DatasetError, SegmentationDataset, Transforms
from .folder_splits import (
    PARTITION_SPLITS,
    Partition,
    check_val_fraction,
    partition,
    read_partition,
)
from .image_files import (
    IMAGE_CHANNELS,
    IMAGE_EXTENSIONS,
    check_same_size,
    read_image,
    read_label_png,
)
from .label_maps import ValueMap
from .palettes import voc_colormap

CLASSES_FILES = ("classes.yaml", "classes.yml", "classes.json")
_CLASSES_KEYS = ("names", "colors", "ignore_index", "ignore_color")
_CLASSES_EXAMPLE = (
    "write e.g. `names: [background, road, car]`, optionally `colors: [[0, 0, 0], [128, 64, 128], "
    "[0, 0, 142]]` and `ignore_index: 255`"
)
_MAX_LISTED = 5


class UnsplitFolderError(DatasetError):
    """A named split of one flat folder without ``val_fraction``: train and val would be the same
    images. (``check-data`` lists it and goes on reading the whole folder.)"""


def generated_palette(num_colors: int) -> np.ndarray:
    """``(num_colors, 3)`` uint8 distinct colours: entries ``1 … num_colors`` of the PASCAL VOC
    colour map, which spreads the bits of the index over R, G and B (distinct for up to 2²⁴ − 1
    colours). Entry 0, black, is skipped so that it stays free for ignored pixels.

    >>> generated_palette(3).tolist()
    [[128, 0, 0], [0, 128, 0], [128, 128, 0]]
    """
    return voc_colormap(num_colors + 1)[1:]


@dataclass(frozen=True)
class ClassesFile:
    """A parsed classes file: the label space, and the colours that colour masks are mapped by."""

    path: Path
    classes: ClassInfo
    mask_colors: np.ndarray | None  # (K, 3) uint8 when the file gives `colors`, else None
    ignore_color: tuple[int, int, int] | None


def read_classes_file(path: str | Path) -> ClassesFile:
    """Parse and check a ``classes.yaml`` / ``classes.json``; errors name the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: classes file not found; {_CLASSES_EXAMPLE}")
    try:
        text = path.read_text(encoding="utf-8")
        content = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as err:
        raise DatasetError(f"{path}: cannot parse the classes file ({err}); {_CLASSES_EXAMPLE}") from err
    if not isinstance(content, dict):
        raise DatasetError(f"{path}: the classes file must be a mapping with a `names:` list; {_CLASSES_EXAMPLE}")
    unknown = sorted(set(content) - set(_CLASSES_KEYS))
    if unknown:
        raise DatasetError(f"{path}: unknown keys {unknown}; the keys are {list(_CLASSES_KEYS)}")

    names = content.get("names")
    if not isinstance(names, list) or not names:
        raise DatasetError(f"{path}: `names:` is missing or empty; {_CLASSES_EXAMPLE}")
    not_text = [n for n in names if not isinstance(n, str)]
    if not_text:
        raise DatasetError(f"{path}: class names must be strings, got {not_text[:_MAX_LISTED]}; quote them")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"{path}: duplicate class names {duplicates}")

    ignore_index = content.get("ignore_index", 255)
    if not _is_int(ignore_index) or ignore_index < len(names):
        raise DatasetError(
            f"{path}: `ignore_index` must be an integer ≥ the number of classes ({len(names)}) so it "
            f"cannot be a class id, got {ignore_index!r}"
        )
    ignore_color = content.get("ignore_color")
    if ignore_color is not None:
        ignore_color = _parse_color(ignore_color, path, "ignore_color")

    colors = content.get("colors")
    if colors is not None:
        colors = _parse_colors(colors, names, ignore_color, path)
    palette = colors if colors is not None else generated_palette(len(names))
    return ClassesFile(path, ClassInfo(tuple(names), palette, ignore_index), colors, ignore_color)


class FolderDataset(SegmentationDataset):
    """Images and masks paired by file stem (see the module docstring for the layouts).

    Args:
        root: the dataset folder.
        split: e.g. ``"train"``; reads ``root/<split>/`` when it exists, else the ``train`` or
            ``val`` part of the flat ``root/images`` that ``val_fraction`` defines; ``None``: the
            whole flat folder.
        classes_file: defaults to ``root/classes.yaml`` (or ``.yml`` / ``.json``); a relative path
            not found from the working directory is looked up in ``root``.
        val_fraction: share of a flat folder's images held out as ``val`` (e.g. 0.2).
        split_seed: seeds that partition.
        split_lists: a folder holding ``train.txt`` and ``val.txt`` (image files relative to
            ``root``, as ``atrous fit`` writes into ``<run>/splits``): the partition to use
            instead of drawing one.
        label_map: stored mask value → class id (or ``ignore_index``) for index masks, e.g.
            ``{255: 1}`` for 0/255 binary masks; other values are read as they are.
        skip_unpaired: leave out images without a mask (and masks without an image) instead of
            refusing them; :attr:`unpaired` lists them.
        transforms: joint ``(image, mask)`` transforms applied by ``__getitem__``.
        image_channels: 3 (RGB), 1 (grey) or 4 (4-band files, e.g. RGB-NIR) for ``model.in_channels``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        *,
        classes_file: str | Path | None = None,
        val_fraction: float | None = None,
        split_seed: int = 0,
        split_lists: str | Path | None = None,
        label_map: dict[int, int] | None = None,
        skip_unpaired: bool = False,
        transforms: Transforms | None = None,
        image_channels: int = 3,
    ) -> None:
        super().__init__(transforms)
        if image_channels not in IMAGE_CHANNELS:
            raise ConfigError(f"data.dataset.image_channels: 1 (grey), 3 (RGB) or 4 (4-band files), got {image_channels!r}")
        self.image_channels = image_channels
        self.root = Path(root)
        self.split = split
        if val_fraction is not None:
            val_fraction = check_val_fraction(val_fraction)
        if not self.root.is_dir():
            raise DatasetError(f"{self.root}: dataset folder not found; {self._layout_hint()}")
        data_dir, partitioned = self._layout(split, val_fraction, split_lists)
        self.image_dir, self.mask_dir = data_dir / "images", data_dir / "masks"
        for directory in (self.image_dir, self.mask_dir):
            if not directory.is_dir():
                raise DatasetError(f"{directory}: folder not found; {self._layout_hint()}")

        spec = read_classes_file(find_classes_file(self.root, classes_file))
        self.classes_file = spec.path
        self.classes = spec.classes
        self._color_keys, self._color_ids = _color_lookup(spec)
        self.label_map = ValueMap(label_map, self.classes.num_classes, self.classes.ignore_index) if label_map else None
        # uint8 masks (the dataset contract) unless the label space needs more (ignore_index > 255).
        fits_uint8 = max(self.classes.num_classes - 1, self.classes.ignore_index) <= 255
        self._mask_dtype = np.uint8 if fits_uint8 else np.int64

        images = _files_by_stem(self.image_dir, IMAGE_EXTENSIONS)
        if not images:
            raise DatasetError(
                f"{self.image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)}) found; {self._layout_hint()}"
            )
        masks = _files_by_stem(self.mask_dir, (".png",))
        self.unpaired: list[tuple[Path, str]] = self._check_pairs(images, masks, skip_unpaired)
        stems = sorted(set(images) & set(masks))
        if not stems:  # skip_unpaired left nothing
            raise DatasetError(f"{self.image_dir}: no image has a mask in {self.mask_dir}; {self._layout_hint()}")
        self.partition: Partition | None = None
        if partitioned:
            stems = self._partitioned(stems, images, val_fraction, split_seed, split_lists)
        self.stems = stems
        self.images = [images[s] for s in self.stems]
        self.masks = [masks[s] for s in self.stems]

    def _layout(self, split: str | None, val_fraction: float | None, split_lists: object) -> tuple[Path, bool]:
        """The folder to read, and whether it is a flat folder to partition."""
        if split is not None and (self.root / split / "images").is_dir():
            if val_fraction is not None or split_lists is not None:
                raise DatasetError(
                    f"{self.root}: has split subfolders ({self.root / split}), so val_fraction and split_lists "
                    "do not apply; remove them from data.dataset, or use a flat root/images + root/masks folder"
                )
            return self.root / split, False
        if split is None or not (self.root / "images").is_dir():
            return self.root, False
        if split not in PARTITION_SPLITS:
            raise DatasetError(
                f"{self.root / split}: folder not found; a flat folder is partitioned into train and val only — "
                f"put the {split} images in {self.root / split}/images and their masks in {self.root / split}/masks"
            )
        if val_fraction is None and split_lists is None:
            raise UnsplitFolderError(
                f"{self.root}: one flat images/ + masks/ folder and no train/ or val/ subfolders, so train and val "
                f"would be the same images; either move them into {self.root}/train/{{images,masks}} and "
                f"{self.root}/val/{{images,masks}}, or set data.dataset.val_fraction: 0.2 to hold out a seeded "
                "random 20% for validation"
            )
        return self.root, True

    def _partitioned(
        self, stems: list[str], images: dict[str, Path], val_fraction: float | None, seed: int, lists: object
    ) -> list[str]:
        """The stems of this split's part of a flat folder (:mod:`.folder_splits`)."""
        files = {images[s].relative_to(self.root).as_posix(): s for s in stems}
        if lists is not None:
            self.partition = read_partition(lists)
            gone = [f for f in self.partition.train + self.partition.val if f not in files]
            if gone:
                raise DatasetError(
                    f"{Path(str(lists))}: lists {len(gone)} image(s) that {self.root} does not hold (with a mask), "
                    f"e.g. {gone[0]}; restore them, or drop split_lists to draw a new partition"
                )
        else:
            self.partition = partition(list(files), val_fraction, seed)
        return sorted(files[f] for f in self.partition.files(self.split))

    def __len__(self) -> int:
        return len(self.stems)

    def name(self, index: int) -> str:
        return self.stems[index]

    def image_path(self, index: int) -> Path:
        return self.images[index]

    def label_path(self, index: int) -> Path:
        return self.masks[index]

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        image_path, mask_path = self.images[index], self.masks[index]
        image = read_image(image_path, self.max_image_pixels, self.image_channels, self.decoded_cache)
        raw = read_label_png(mask_path, self.max_image_pixels, self.decoded_cache)
        mask = self._index_mask(raw, mask_path) if raw.ndim == 2 else self._color_mask(raw, mask_path)
        check_same_size(image, mask, image_path, mask_path)
        return image, mask

    def _index_mask(self, raw: np.ndarray, path: Path) -> tv_tensors.Mask:
        """Grey / palette PNG: the value is the class id; anything else but ``ignore_index`` is an error."""
        num_classes, ignore = self.classes.num_classes, self.classes.ignore_index
        if raw.dtype != np.uint8:  # 16-bit or 32-bit grey PNGs
            raw = raw.astype(np.int64, copy=False)
        if self.label_map is not None:
            raw = self.label_map(raw)
        valid = ((raw >= 0) & (raw < num_classes)) | (raw == ignore)
        if not valid.all():
            bad = np.unique(raw[~valid])
            example = ", ".join(f"{v}: {min(i + 1, num_classes - 1)}" for i, v in enumerate(bad[:2].tolist()))
            raise DatasetError(
                f"{path}: mask values {bad[:10].tolist()} are not class ids: {self.classes_file} names "
                f"{num_classes} classes (ids 0..{num_classes - 1}) and ignore_index is {ignore}; "
                "fix the mask, add the missing classes to `names:`, or map the values to class ids with "
                f"data.dataset.label_map (e.g. {{{example}}})"
            )
        return tv_tensors.Mask(torch.from_numpy(raw.astype(self._mask_dtype)))

    def _color_mask(self, raw: np.ndarray, path: Path) -> tv_tensors.Mask:
        """RGB PNG: each pixel's colour is looked up in the classes file's colours (vectorised:
        colours packed into 24-bit integers, found by binary search in the sorted palette)."""
        packed = _pack_rgb(raw)
        if self._color_keys is None:
            found = np.unique(packed)
            shown = ", ".join(str(list(_unpack_rgb(c))) for c in found[:_MAX_LISTED])
            raise DatasetError(
                f"{path}: colour (RGB) mask holding {len(found)} colours ({shown}{_more(list(found))}), but "
                f"{self.classes_file} gives no `colors:`; add `colors:` there, one [r, g, b] per class in the "
                "order of `names:`, or save masks as index PNGs (pixel value = class id)"
            )
        found_at = np.minimum(np.searchsorted(self._color_keys, packed), len(self._color_keys) - 1)
        found = self._color_keys[found_at] == packed
        if not found.all():
            bad = np.unique(packed[~found])
            shown = ", ".join(str(_unpack_rgb(c)) for c in bad[:_MAX_LISTED])
            more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
            raise DatasetError(
                f"{path}: colours {shown}{more} are not in the `colors:` (or `ignore_color:`) of "
                f"{self.classes_file}; add them, or re-export the mask without anti-aliasing or "
                "lossy compression (colour masks must match the palette exactly)"
            )
        return tv_tensors.Mask(torch.from_numpy(self._color_ids[found_at].astype(self._mask_dtype)))

    def _check_pairs(self, images: dict[str, Path], masks: dict[str, Path], skip: bool) -> list[tuple[Path, str]]:
        """Images without a mask and masks without an image: refused, or with ``skip`` returned
        as ``(file, what is missing)``."""
        no_mask = sorted(set(images) - set(masks))
        no_image = sorted(set(masks) - set(images))
        if skip:
            return sorted([(images[s], f"no mask {self.mask_dir / s}.png") for s in no_mask]
                          + [(masks[s], f"no image {self.image_dir / s}.<ext>") for s in no_image])
        if not no_mask and not no_image:
            return []
        problems = []
        if no_mask:
            listed = ", ".join(f"{images[s]} (no {self.mask_dir / s}.png)" for s in no_mask[:_MAX_LISTED])
            problems.append(f"{len(no_mask)} images without a mask: {listed}{_more(no_mask)}")
            not_png = sorted(
                p for p in self.mask_dir.iterdir() if p.stem in no_mask and p.suffix.lower() != ".png"
            )
            if not_png:
                problems.append(f"masks must be PNG (lossless), found {not_png[0]}")
        if no_image:
            listed = ", ".join(str(masks[s]) for s in no_image[:_MAX_LISTED])
            problems.append(f"{len(no_image)} masks without an image: {listed}{_more(no_image)}")
        raise DatasetError(
            "; ".join(problems) + f"; each {self.image_dir}/<name>.<ext> needs {self.mask_dir}/<name>.png"
        )

    def _layout_hint(self) -> str:
        root = self.root
        hint = f"expected {root}/images/0001.jpg with its mask {root}/masks/0001.png and {root}/classes.yaml"
        if self.split is not None:
            hint += f" (or {root}/{self.split}/images/… and {root}/{self.split}/masks/…)"
        return hint


def find_classes_file(root: Path, classes_file: str | Path | None) -> Path:
    """The classes file a folder dataset reads: ``classes_file`` (a relative path not found from
    the working directory is looked up in ``root``), else the first of ``CLASSES_FILES`` in ``root``."""
    if classes_file is not None:
        path = Path(classes_file)
        if not path.is_absolute() and not path.exists() and (root / path).exists():
            return root / path
        return path
    for name in CLASSES_FILES:
        if (root / name).is_file():
            return root / name
    return root / CLASSES_FILES[0]


def _files_by_stem(directory: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """Files of ``directory`` with one of ``suffixes`` (any case) by stem; hidden files skipped.
    Two files with one stem (``a.jpg``, ``a.png``) are ambiguous and raise."""
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in suffixes or not path.is_file():
            continue
        if path.stem in files:
            raise DatasetError(f"{path} and {files[path.stem]} share the name {path.stem!r}; keep one")
        files[path.stem] = path
    return files


def _color_lookup(spec: ClassesFile) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Sorted packed colours and the train id of each, for :meth:`FolderDataset._color_mask`."""
    if spec.mask_colors is None:
        return None, None
    keys = _pack_rgb(spec.mask_colors)
    ids = np.arange(len(keys), dtype=np.int64)
    if spec.ignore_color is not None:
        keys = np.append(keys, _pack_rgb(np.array(spec.ignore_color, dtype=np.uint8)))
        ids = np.append(ids, spec.classes.ignore_index)
    order = np.argsort(keys)
    return keys[order], ids[order]


def _pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 → ``(...)`` int64 ``r·2¹⁶ + g·2⁸ + b``."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _unpack_rgb(packed: int) -> tuple[int, int, int]:
    packed = int(packed)
    return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_color(value: object, path: Path, key: str) -> tuple[int, int, int]:
    is_rgb = isinstance(value, list | tuple) and len(value) == 3
    if not (is_rgb and all(_is_int(c) and 0 <= c <= 255 for c in value)):
        raise DatasetError(f"{path}: {key} is {value!r}; a colour is [r, g, b] with integers 0..255")
    return tuple(value)  # type: ignore[return-value]


def _parse_colors(colors: object, names: list[str], ignore_color: tuple | None, path: Path) -> np.ndarray:
    """`colors:` → ``(K, 3)`` uint8, one distinct colour per class, none equal to `ignore_color`."""
    if not isinstance(colors, list) or len(colors) != len(names):
        count = len(colors) if isinstance(colors, list) else type(colors).__name__
        raise DatasetError(
            f"{path}: `colors:` has {count} entries but `names:` has {len(names)}; give one [r, g, b] per class"
        )
    parsed = [_parse_color(c, path, f"colors[{i}] ({names[i]!r})") for i, c in enumerate(colors)]
    first: dict[tuple[int, int, int], int] = {}
    for i, color in enumerate(parsed):
        if color in first:
            j = first[color]
            raise DatasetError(
                f"{path}: colors[{j}] ({names[j]!r}) and colors[{i}] ({names[i]!r}) are both "
                f"{list(color)}; each class needs its own colour"
            )
        first[color] = i
    if ignore_color is not None and ignore_color in first:
        i = first[ignore_color]
        raise DatasetError(f"{path}: ignore_color {list(ignore_color)} is also the colour of {names[i]!r}")
    return np.array(parsed, dtype=np.uint8)


def _more(items: list) -> str:
    return f" and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
