"""The four Cityscapes benchmark scores, accumulated in the validation step and summed across DDP.

Cordts et al., "The Cityscapes Dataset" (CVPR 2016) §3.2, as cityscapesScripts'
``evalPixelLevelSemanticLabeling`` computes them (the functions ``getIouScoreForLabel``,
``getInstanceIouScoreForLabel``, ``getIouScoreForCategory``, ``getInstanceIouScoreForCategory``
and the instance loop of ``evaluatePair``):

* IoU class: TP / (TP + FP + FN) per class over labelled pixels, averaged over classes with a
  non-zero denominator;
* iIoU class (person, rider, car, truck, bus, train, motorcycle, bicycle): each ground-truth
  instance's TP and FN are weighted by ``avgClassSize[class] / instance size`` (FP unweighted);
* IoU category / iIoU category: the same over the 7 categories (flat, construction, object,
  nature, sky, human, vehicle; iIoU for human and vehicle), a prediction counting as correct when
  its class lies in the ground truth's category.

:class:`CityscapesScores` keeps a 19×19 confusion matrix and the weighted instance sums as
torchmetrics states reduced by ``sum``, so each process accumulates its shard and the scores are
computed once from the totals. Inputs are *train ids* (``0…18``, ignore 255) and gtFine's
``_instanceIds.png`` maps (``label id × 1000 + n`` for instances, the label id elsewhere).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torchmetrics import Metric

from ..data.cityscapes_labels import AVERAGE_INSTANCE_SIZES, EVALUATED, LABELS
from ..data.cityscapes_labels import CATEGORIES as CATEGORY_LABELS

CLASS_NAMES = tuple(label.name for label in EVALUATED)  # the 19 classes, train-id order
INSTANCE_CLASSES = tuple(label.name for label in LABELS if label.has_instances and not label.ignore_in_eval)
CATEGORIES = tuple(c for c, members in CATEGORY_LABELS.items() if not all(m.ignore_in_eval for m in members))
# cityscapesScripts' generateInstanceStats: categories whose every label has instances.
INSTANCE_CATEGORIES = tuple(
    c for c, members in CATEGORY_LABELS.items() if all(m.has_instances for m in members if m.id >= 0)
)
_BY_NAME = {label.name: label for label in LABELS}


class CityscapesScores(Metric):
    """``update(preds, target, instances)`` with ``(N, H, W)`` train-id predictions and labels and
    gtFine instance ids; ``compute()`` → dict with ``IoU_class``, ``iIoU_class``, ``IoU_category``,
    ``iIoU_category`` (fractions) and ``per_class_iou``, ``per_class_iiou``,
    ``per_category_iou``, ``per_category_iiou`` (NaN where the script gives NaN)."""

    full_state_update = False

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        k = len(CLASS_NAMES)
        # label id → train id, and each instance class's mean size, as tensors for vectorised lookups
        label_to_train = torch.full((256,), -1, dtype=torch.int64)
        for label in EVALUATED:
            label_to_train[label.id] = label.train_id
        self.register_buffer("label_to_train", label_to_train, persistent=False)
        instance_index = torch.full((k,), -1, dtype=torch.int64)
        average = torch.zeros(k, dtype=torch.float64)
        for i, name in enumerate(INSTANCE_CLASSES):
            instance_index[_BY_NAME[name].train_id] = i
            average[_BY_NAME[name].train_id] = AVERAGE_INSTANCE_SIZES[name]
        self.register_buffer("instance_index", instance_index, persistent=False)
        self.register_buffer("average_size", average, persistent=False)
        category_of = torch.tensor([CATEGORIES.index(_BY_NAME[n].category) for n in CLASS_NAMES])
        self.register_buffer("category_of", category_of, persistent=False)
        self.add_state("confusion", torch.zeros(k, k, dtype=torch.int64), dist_reduce_fx="sum")
        for name, size in (("class", len(INSTANCE_CLASSES)), ("category", len(INSTANCE_CATEGORIES))):
            self.add_state(f"{name}_tp_weighted", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{name}_fn_weighted", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor, instances: torch.Tensor) -> None:  # type: ignore[override]
        if not preds.shape == target.shape == instances.shape:
            raise ValueError(f"predictions {tuple(preds.shape)}, labels {tuple(target.shape)} and instance maps "
                             f"{tuple(instances.shape)} differ in shape")
        k = len(CLASS_NAMES)
        preds, target, instances = preds.long(), target.long(), instances.long()
        valid = target != self.ignore_index
        pairs = target[valid] * k + preds[valid]
        self.confusion += torch.bincount(pairs, minlength=k * k).reshape(k, k)
        for pred, ids in zip(preds, instances, strict=True):
            self._update_instances(pred.flatten(), ids.flatten())

    def _update_instances(self, pred: torch.Tensor, ids: torch.Tensor) -> None:
        """One image: per instance (id > 1000), TP and FN weighted by mean size / instance size."""
        things = ids > 1000
        if not things.any():
            return
        ids, pred = ids[things], pred[things]
        train = self.label_to_train[(ids // 1000).clamp(max=255)]
        keep = train >= 0
        keep &= self.instance_index[train.clamp(min=0)] >= 0  # evaluated classes with instances
        ids, pred, train = ids[keep], pred[keep], train[keep]
        if ids.numel() == 0:
            return
        unique, inverse = torch.unique(ids, return_inverse=True)
        size = torch.bincount(inverse, minlength=len(unique)).double()
        instance_class = self.label_to_train[unique // 1000]
        weight = self.average_size[instance_class] / size
        tp = torch.bincount(inverse, weights=(pred == train).double(), minlength=len(unique))
        slot = self.instance_index[instance_class]
        self.class_tp_weighted.index_add_(0, slot, tp * weight)
        self.class_fn_weighted.index_add_(0, slot, (size - tp) * weight)
        category = self.category_of[instance_class]
        in_category = self.category_of[pred.clamp(0, len(CLASS_NAMES) - 1)] == self.category_of[train]
        in_category &= pred < len(CLASS_NAMES)
        category_tp = torch.bincount(inverse, weights=in_category.double(), minlength=len(unique))
        category_slot = torch.tensor([INSTANCE_CATEGORIES.index(CATEGORIES[c]) for c in category.tolist()],
                                     device=ids.device)
        self.category_tp_weighted.index_add_(0, category_slot, category_tp * weight)
        self.category_fn_weighted.index_add_(0, category_slot, (size - category_tp) * weight)

    def compute(self) -> dict[str, Any]:
        c = self.confusion.double()
        k = len(CLASS_NAMES)
        tp, truth, predicted = c.diag(), c.sum(1), c.sum(0)
        per_class = {n: _ratio(tp[i], predicted[i] - tp[i] + truth[i]) for i, n in enumerate(CLASS_NAMES)}
        per_class_inst = {}
        for i, name in enumerate(INSTANCE_CLASSES):
            t = _BY_NAME[name].train_id
            fp = predicted[t] - tp[t]
            per_class_inst[name] = _ratio(self.class_tp_weighted[i], self.class_tp_weighted[i] + fp + self.class_fn_weighted[i])
        one_hot = torch.nn.functional.one_hot(self.category_of, len(CATEGORIES)).double()  # (k, categories)
        categories = one_hot.T @ c @ one_hot  # category confusion (rows: truth)
        cat_tp, cat_truth, cat_pred = categories.diag(), categories.sum(1), categories.sum(0)
        per_category = {n: _ratio(cat_tp[j], cat_truth[j] + cat_pred[j] - cat_tp[j]) for j, n in enumerate(CATEGORIES)}
        per_category_inst = {}
        for i, name in enumerate(INSTANCE_CATEGORIES):
            j = CATEGORIES.index(name)
            fp = cat_pred[j] - cat_tp[j]
            tp_w, fn_w = self.category_tp_weighted[i], self.category_fn_weighted[i]
            per_category_inst[name] = _ratio(tp_w, tp_w + fp + fn_w)
        assert k == c.shape[0]
        return {
            "IoU_class": _mean(per_class), "iIoU_class": _mean(per_class_inst),
            "IoU_category": _mean(per_category), "iIoU_category": _mean(per_category_inst),
            "per_class_iou": per_class, "per_class_iiou": per_class_inst,
            "per_category_iou": per_category, "per_category_iiou": per_category_inst,
        }


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> float:
    return float(numerator) / float(denominator) if float(denominator) != 0 else float("nan")


def _mean(scores: dict[str, float]) -> float:
    valid = [v for v in scores.values() if not math.isnan(v)]
    return sum(valid) / len(valid) if valid else float("nan")
