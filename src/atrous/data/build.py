"""Datasets by config name, and DeepLabv3's bootstrapping of hard images.

``data`` section::

    dataset: {name: cityscapes, root: data/cityscapes, variant: "19"}   # constructor arguments
             # and max_image_pixels: refuse larger images (default: Pillow's limit; 0: none)
    train: {split: train, transforms: {...}, bootstrap: {classes: [bicycle], repeats: 1}}
    val:   {split: val, transforms: {...}}
    batch_size: 8
    val_batch_size: 1
    num_workers: 4

Keys of ``train``/``val`` other than ``split``, ``transforms`` and ``bootstrap`` are extra
constructor arguments for that split (e.g. ``length`` of the synthetic streets).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from ..config import ConfigError
from .base import SegmentationDataset
from .transforms import transforms_from_config

DATASETS = {
    "synthetic": ("atrous.data.synthetic", "SyntheticStreets"),
    "cityscapes": ("atrous.data.cityscapes", "Cityscapes"),
    "voc": ("atrous.data.voc", "VOCSegmentation"),
    "ade20k": ("atrous.data.ade20k", "ADE20K"),
    "folder": ("atrous.data.folder", "FolderDataset"),
}
SPLIT_KEYS = ("split", "transforms", "bootstrap")


def dataset_class(name: str) -> type[SegmentationDataset]:
    if name not in DATASETS:
        raise ConfigError(f"data.dataset.name: unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    module, attr = DATASETS[name]
    return getattr(importlib.import_module(module), attr)


def dataset_arguments(
    dataset_cfg: Mapping[str, Any] | None, split_cfg: Mapping[str, Any] | None
) -> tuple[type[SegmentationDataset], dict[str, Any]]:
    """The dataset class and its constructor arguments for one split (checked, nothing read)."""
    cfg = dict(dataset_cfg or {"name": "synthetic"})
    split_cfg = dict(split_cfg or {})
    cls = dataset_class(cfg.pop("name", "synthetic"))
    kwargs = {**cfg, **{k: v for k, v in split_cfg.items() if k not in SPLIT_KEYS}}
    if "split" in split_cfg:
        kwargs["split"] = split_cfg["split"]
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params) - {"transforms"})
    if unknown:
        raise ConfigError(f"data: unknown option(s) {unknown} for {cls.__name__}; valid: {[p for p in params if p != 'transforms']}")
    return cls, kwargs


def build_dataset(dataset_cfg: Mapping[str, Any], split_cfg: Mapping[str, Any] | None, *, train: bool) -> SegmentationDataset:
    """Build one split: ``dataset_cfg`` holds shared constructor arguments, ``split_cfg`` the split."""
    dataset_cfg = dict(dataset_cfg or {"name": "synthetic"})
    max_pixels = dataset_cfg.pop("max_image_pixels", None)
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0):
        raise ConfigError(f"data.dataset.max_image_pixels: a whole number of pixels (0: no limit), got {max_pixels!r}")
    cls, kwargs = dataset_arguments(dataset_cfg, split_cfg)
    dataset = cls(**kwargs)
    dataset.max_image_pixels = max_pixels
    # The transforms need the ignore index, which the dataset knows once it exists.
    transforms_cfg = (split_cfg or {}).get("transforms")
    dataset.transforms = transforms_from_config(transforms_cfg, train=train, ignore_index=dataset.classes.ignore_index)
    return dataset


def bootstrap(dataset: SegmentationDataset, classes: Sequence[str], repeats: int = 1) -> Dataset:
    """DeepLabv3 §4.3: duplicate the images that contain hard classes (e.g. bicycle, chair,
    table, potted-plant, sofa on VOC) ``repeats`` more times."""
    names = list(dataset.classes.names)
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise ConfigError(f"data.train.bootstrap.classes: unknown class(es) {unknown}; classes: {names}")
    wanted = [names.index(c) for c in classes]
    hard = [i for i in range(len(dataset)) if dataset.class_presence(i)[wanted].any()]
    return ConcatDataset([dataset] + [Subset(dataset, hard)] * repeats)
