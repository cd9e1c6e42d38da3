"""Datasets by config name, and DeepLabv3's bootstrapping of hard images.

``data`` section::

    dataset: {name: cityscapes, root: data/cityscapes, variant: "19"}   # constructor arguments
             # and max_image_pixels: refuse larger images (default: Pillow's limit; 0: none)
             # and cache_dir: keep decoded files there (atrous.data.decoded_cache; default: none)
    train: {split: train, transforms: {...}, bootstrap: {classes: [bicycle], repeats: 1}}
    test:  {split: test}
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
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset, Subset

from ..config import (
    ConfigError,
    check_arguments,
    check_keys,
    check_mapping,
    check_value,
    did_you_mean,
    suggestions,
)
from .base import SegmentationDataset
from .choices import SPLIT_SECTIONS
from .decoded_cache import DecodedCache
from .transforms import CONFIG_KEYS as TRANSFORM_KEYS
from .transforms import transforms_from_config

DATASETS = {
    "synthetic": ("atrous.data.synthetic", "SyntheticStreets"),
    "cityscapes": ("atrous.data.cityscapes", "Cityscapes"),
    "voc": ("atrous.data.voc", "VOCSegmentation"),
    "ade20k": ("atrous.data.ade20k", "ADE20K"),
    "folder": ("atrous.data.folder", "FolderDataset"),
}
SPLIT_KEYS = ("split", "transforms", "bootstrap")
DATA_KEYS = ("dataset", *SPLIT_SECTIONS, "batch_size", "val_batch_size", "num_workers")
COUNTS = {"batch_size": 1, "val_batch_size": 1, "num_workers": 0}  # key: smallest value
SHARED_KEYS = ("max_image_pixels", "cache_dir")  # data.dataset keys of every dataset


def check_data_section(cfg: Mapping[str, Any] | None) -> None:
    """Validate a ``data`` section without reading the dataset: keys (with a "did you mean"),
    batch sizes >= 1, ``num_workers`` >= 0, and each split's dataset and transform options
    (:func:`atrous.data.build.check_split_section`). Raises :class:`ConfigError`."""
    if cfg is None:
        return
    check_mapping("data", cfg)
    check_keys("data", cfg, DATA_KEYS)
    for key, minimum in COUNTS.items():
        if key in cfg:
            check_value(f"data.{key}", cfg[key], int)
            if cfg[key] < minimum:
                raise ConfigError(f"data.{key}: must be >= {minimum}, got {cfg[key]!r}")
    if cfg.get("dataset") is not None:
        check_mapping("data.dataset", cfg["dataset"])
        dataset_class(cfg["dataset"].get("name", "synthetic"))
    for stage in SPLIT_SECTIONS:
        if stage in cfg:
            check_split_section(cfg.get("dataset"), stage, cfg[stage])


BOOTSTRAP_KEYS = ("classes", "repeats")


def dataset_class(name: str) -> type[SegmentationDataset]:
    if not isinstance(name, str) or name not in DATASETS:
        raise ConfigError(
            f"data.dataset.name: unknown dataset {name!r}{did_you_mean(name, DATASETS)}; choose from {sorted(DATASETS)}"
        )
    module, attr = DATASETS[name]
    return getattr(importlib.import_module(module), attr)


def dataset_arguments(
    dataset_cfg: Mapping[str, Any] | None, split_cfg: Mapping[str, Any] | None, *, section: str = "data"
) -> tuple[type[SegmentationDataset], dict[str, Any]]:
    """The dataset class and its constructor arguments for one split (checked, nothing read)."""
    cfg = dict(dataset_cfg or {"name": "synthetic"})
    for key in SHARED_KEYS:  # every dataset's, set by build_dataset (not constructor arguments)
        cfg.pop(key, None)
    split_cfg = dict(split_cfg or {})
    cls = dataset_class(cfg.pop("name", "synthetic"))
    kwargs = {**cfg, **{k: v for k, v in split_cfg.items() if k not in SPLIT_KEYS}}
    if "split" in split_cfg:
        kwargs["split"] = check_split_name(split_cfg["split"], section)
    params = inspect.signature(cls).parameters
    unknown = sorted(set(kwargs) - set(params) - {"transforms"})
    if unknown:
        valid = [p for p in params if p != "transforms"]
        raise ConfigError(f"data: unknown option(s) {unknown} for {cls.__name__}; valid: {valid}{suggestions(unknown, valid)}")
    check_arguments(section, cls, kwargs)
    return cls, kwargs


def check_split_name(split: Any, section: str = "data") -> Any:
    """A split is a name (``train``, ``val``, a folder name), never a path: no ``/``, ``\\``,
    ``.`` or ``..`` that would read images outside the dataset's root. Returns ``split``."""
    if isinstance(split, str) and (split in ("", ".", "..") or any(sep in split for sep in ("/", "\\"))):
        raise ConfigError(f"{section}.split {split!r}: a split is a name like 'train' or 'val', not a path; "
                          "give the dataset's folder as data.dataset.root")
    return split


def check_split_section(dataset_cfg: Any, stage: str, split_cfg: Any) -> None:
    """Validate ``data.<stage>`` (with the shared ``data.dataset``) without reading any file:
    the dataset's name and constructor options, the transform options and ``bootstrap``."""
    if dataset_cfg is not None:
        check_mapping("data.dataset", dataset_cfg)
    if split_cfg is None:
        split_cfg = {}
    check_mapping(f"data.{stage}", split_cfg)
    dataset_arguments(dataset_cfg, split_cfg, section=f"data.{stage}")
    transforms = split_cfg.get("transforms")
    if transforms is not None:
        check_mapping(f"data.{stage}.transforms", transforms)
        check_keys(f"data.{stage}.transforms", transforms, TRANSFORM_KEYS)
        try:  # the values too (sizes, ranges): building them reads nothing
            transforms_from_config(transforms, train=stage == "train", ignore_index=255)
        except ConfigError as err:
            raise ConfigError(f"data.{stage}.transforms: {err}") from err
    boot = split_cfg.get("bootstrap")
    if boot is not None:
        if stage != "train":
            raise ConfigError(f"data.{stage}.bootstrap: bootstrapping applies to data.train only")
        check_mapping("data.train.bootstrap", boot)
        check_keys("data.train.bootstrap", boot, BOOTSTRAP_KEYS)
        if "classes" not in boot:
            raise ConfigError("data.train.bootstrap: needs 'classes', e.g. classes: [bicycle, chair]")
        classes = boot["classes"]
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"data.train.bootstrap.classes: expected a list of class names, got {classes!r}")
        check_value("data.train.bootstrap.repeats", boot.get("repeats", 1), int)
        if boot.get("repeats", 1) < 1:
            raise ConfigError(f"data.train.bootstrap.repeats: must be >= 1, got {boot['repeats']!r}")


def build_dataset(dataset_cfg: Mapping[str, Any], split_cfg: Mapping[str, Any] | None, *, train: bool) -> SegmentationDataset:
    """Build one split: ``dataset_cfg`` holds shared constructor arguments, ``split_cfg`` the split."""
    dataset_cfg = dict(dataset_cfg or {"name": "synthetic"})
    max_pixels = dataset_cfg.pop("max_image_pixels", None)
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0):
        raise ConfigError(f"data.dataset.max_image_pixels: a whole number of pixels (0: no limit), got {max_pixels!r}")
    cache_dir = dataset_cfg.pop("cache_dir", None)
    if cache_dir is not None and (not isinstance(cache_dir, str) or not cache_dir):
        raise ConfigError(f"data.dataset.cache_dir: a folder for decoded images, e.g. cache/cityscapes, got {cache_dir!r}")
    cls, kwargs = dataset_arguments(dataset_cfg, split_cfg)
    dataset = cls(**kwargs)
    dataset.max_image_pixels = max_pixels
    dataset.decoded_cache = DecodedCache(cache_dir) if cache_dir is not None else None
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


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's or SLURM's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def bounded_workers(requested: int, option: str = "data.num_workers") -> int:
    """``data.num_workers`` (or ``--num-workers``), at most one worker per usable CPU: more only adds processes (and
    memory) without adding speed, and a typo like 100000 would fork until memory runs out."""
    limit = usable_cpus()
    if requested > limit:
        print(f"atrous: {option}={requested} is more than this machine's {limit} usable CPU(s); using {limit}",
              file=sys.stderr)
        return limit
    return requested
