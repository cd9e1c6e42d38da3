"""The ``SyntheticStreets`` dataset: deterministic per ``(seed, split, index)``."""

from __future__ import annotations

import numpy as np
import torch
from torchvision import tv_tensors

from ...errors import ConfigError
from ..base import ClassInfo, SegmentationDataset, Transforms
from ..image_files import check_image_pixels
from ..palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
from .render import render_scene
from .scene import Scene

SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}
DEFAULT_LENGTHS = {"train": 2000, "val": 200, "test": 200}


class SyntheticStreets(SegmentationDataset):
    """Procedural street scenes labelled with Cityscapes train ids (see the module docstring).

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``: disjoint random streams.
        length: number of samples (default 2000 for train, 200 otherwise).
        image_size: ``(H, W)`` of each pair.
        seed: base seed; sample ``i`` depends only on ``(seed, split, i)``.
        transforms: joint transform applied by ``__getitem__``.
    """

    classes = ClassInfo(CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, ignore_index=255)

    def __init__(
        self,
        split: str = "train",
        *,
        length: int | None = None,
        image_size: tuple[int, int] = (128, 256),
        seed: int = 0,
        transforms: Transforms | None = None,
    ) -> None:
        super().__init__(transforms)
        if split not in SPLIT_STREAMS:
            raise ConfigError(f"unknown split {split!r}; choose one of {list(SPLIT_STREAMS)}")
        if (
            not isinstance(image_size, (list, tuple))
            or len(image_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in image_size)
            or min(image_size) < 16
        ):
            raise ConfigError(f"image_size must be (H, W) with both >= 16, got {image_size!r}")
        check_image_pixels("image_size", *image_size)
        if length is not None and (not isinstance(length, int) or isinstance(length, bool) or length < 0):
            raise ConfigError(f"length must be an integer >= 0, got {length!r}")
        self.split = split
        self.length = DEFAULT_LENGTHS[split] if length is None else int(length)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.length

    def name(self, index: int) -> str:
        return f"synthetic_{self.split}_{self._check_index(index):06d}"

    def scene(self, index: int) -> Scene:
        """Render sample ``index`` with its instance map and object list."""
        rng = np.random.default_rng([self.seed, SPLIT_STREAMS[self.split], self._check_index(index)])
        return render_scene(rng, *self.image_size)

    def load(self, index: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        scene = self.scene(index)
        image = torch.from_numpy(np.ascontiguousarray(scene.image.transpose(2, 0, 1)))
        return tv_tensors.Image(image), tv_tensors.Mask(torch.from_numpy(scene.labels.astype(np.uint8)))

    def _check_index(self, index: int) -> int:
        if not -self.length <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} synthetic samples")
        return index % self.length
