"""Evaluation items: the transformed image with the label map at the resolution it is scored at.

The evaluation transforms (:mod:`atrous.data.transforms`) resize image and mask together
(``data.val.transforms.resize``; the DenseASPP report evaluates Cityscapes at 512×1024). The
Cityscapes benchmark scores predictions at the label maps' own resolution, so :class:`EvaluationItems`
returns the *original* mask beside the resized image (the prediction is resized back in the
validation step); with ``original_labels=False`` it keeps the transformed (resized) mask, the
report's protocol. With ``instances=True`` it adds gtFine's instance ids at the mask's size
(for the iIoU scores; the dataset must have ``load_instances``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .base import SegmentationDataset


class EvaluationItems(Dataset):
    """``(image (3, h, w) float, mask (H, W) int64[, instances (H, W) int64])`` per item of ``dataset``."""

    def __init__(self, dataset: SegmentationDataset, *, original_labels: bool = True, instances: bool = False) -> None:
        self.dataset = dataset
        self.original_labels = original_labels
        self.instances = instances
        self.classes = dataset.classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:  # name(), image_path(), ... of the wrapped dataset
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        raw_image, raw_mask = self.dataset.load(index)
        if self.dataset.transforms is not None:
            image, mask = self.dataset.transforms(raw_image, raw_mask)
        else:
            image, mask = raw_image, raw_mask
        if self.original_labels:
            mask = raw_mask.as_subclass(torch.Tensor).long()
        item: tuple[torch.Tensor, ...] = (image, mask)
        if self.instances:
            ids = self.dataset.load_instances(index)
            if ids.shape != mask.shape:  # labels resized with the image: nearest, like the mask
                ids = F.interpolate(ids[None, None].double(), size=tuple(mask.shape), mode="nearest")[0, 0].long()
            item = (*item, ids)
        return item
