"""The ``data`` section of a config, parsed once into a frozen :class:`DataSpec`.

:meth:`DataSpec.from_mapping` checks the section without reading any file
(:func:`atrous.data.build.check_data_section`: keys, counts, the dataset's name and constructor
options, each split's transforms and ``bootstrap``); the data module builds its datasets and
loaders from the spec. This module imports no torch: the checks are imported when a section is
parsed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ReadOnlyDict, freeze, thaw
from .choices import SPLIT_SECTIONS

DEFAULT_DATASET = ReadOnlyDict({"name": "synthetic"})


@dataclass(frozen=True)
class DataSpec:
    """The datasets and loaders of an experiment; mappings are read-only."""

    # shared constructor arguments of every split: {name: cityscapes, root: ..., variant: "19"}
    # (and max_image_pixels: refuse larger images)
    dataset: Mapping[str, Any] = DEFAULT_DATASET
    # the split sections the config gives, by stage (train, val, test): split name, transforms,
    # bootstrap and the split's own constructor arguments
    splits: Mapping[str, Mapping[str, Any]] = ReadOnlyDict()
    batch_size: int = 8  # training batch size (per process)
    val_batch_size: int | None = None  # evaluation batch size; None: batch_size
    num_workers: int = 2  # DataLoader worker processes (at most one per usable CPU)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> DataSpec:
        """The section as a spec (``None``: the defaults, the built-in synthetic streets);
        :class:`~atrous.config.ConfigError` naming the key for anything wrong."""
        from .build import check_data_section

        check_data_section(cfg)
        cfg = cfg or {}
        return cls(
            dataset=freeze(cfg.get("dataset") or DEFAULT_DATASET),
            splits=ReadOnlyDict((stage, freeze(cfg.get(stage) or {})) for stage in SPLIT_SECTIONS if stage in cfg),
            batch_size=int(cfg.get("batch_size", 8)),
            val_batch_size=cfg.get("val_batch_size"),
            num_workers=int(cfg.get("num_workers", 2)),
        )

    def split(self, stage: str) -> Mapping[str, Any]:
        """The section of ``stage`` as the dataset reads it: a section without ``split:`` reads
        the split named like the section (a folder dataset would otherwise read the same images
        for train and val)."""
        return ReadOnlyDict({"split": stage, **self.splits.get(stage, {})})

    @property
    def eval_batch_size(self) -> int:
        return self.batch_size if self.val_batch_size is None else self.val_batch_size

    def evaluation_transforms(self) -> dict[str, Any]:
        """The transforms that evaluation applies to an image, as plain values: val's ``resize``
        (when it has one: the report evaluates at 512×1024) and the ``normalize`` the model is
        evaluated with (val's, else test's, else train's; ``"imagenet"`` when none says)."""
        val = self.splits.get("val", {}).get("transforms") or {}
        out = {"resize": thaw(val["resize"])} if val.get("resize") else {}
        for stage in ("val", "test", "train"):
            transforms = self.splits.get(stage, {}).get("transforms") or {}
            if "normalize" in transforms:
                out["normalize"] = thaw(transforms["normalize"])
                break
        else:
            out["normalize"] = "imagenet"
        return out

    def resizes(self, stage: str) -> bool:
        """Whether ``stage``'s transforms resize the images (their labels then differ in size)."""
        transforms = self.splits.get(stage, {}).get("transforms") or {}
        return bool(transforms.get("resize"))
