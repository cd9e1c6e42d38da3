"""Metrics against an independent per-pixel computation and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atrous.evaluation.metrics import SegmentationMetrics, metrics_from_confusion


def _reference(pred: np.ndarray, truth: np.ndarray, k: int, ignore: int) -> dict:
    """Set-based IoU per class from the pixels themselves (no confusion matrix)."""
    valid = truth != ignore
    p, t = pred[valid], truth[valid]
    ious, accs = [], []
    for c in range(k):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        ious.append(inter / union if union else math.nan)
        accs.append(inter / np.sum(t == c) if np.sum(t == c) else math.nan)
    freq = np.array([np.sum(t == c) for c in range(k)]) / len(t)
    return {
        "mIoU": np.nanmean(ious),
        "pixel_accuracy": np.mean(p == t),
        "mean_accuracy": np.nanmean(accs),
        "fw_iou": np.nansum(freq * np.nan_to_num(ious)),
        "ious": ious,
    }


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_independent_computation(seed):
    rng = np.random.default_rng(seed)
    k, ignore = 5, 255
    truth = rng.integers(0, k - 1, size=(3, 17, 23))  # class k-1 never in the truth
    truth[rng.random(truth.shape) < 0.1] = ignore
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, k, size=truth.shape))
    pred[pred == ignore] = 0
    metric = SegmentationMetrics(k, ignore_index=ignore)
    for i in range(3):  # accumulate over batches
        metric.update(torch.from_numpy(pred[i : i + 1]), torch.from_numpy(truth[i : i + 1]))
    ours = metric.compute_metrics()
    ref = _reference(pred, truth, k, ignore)
    for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fw_iou"):
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
    np.testing.assert_allclose(list(ours["per_class_iou"].values()), ref["ious"])
    assert ours["num_pixels"] == int(np.sum(truth != ignore))


def test_hand_worked_example_and_absent_classes():
    # truth/pred over 6 pixels, 3 classes; class 2 appears in neither → NaN, not counted.
    truth = torch.tensor([[0, 0, 1, 1, 1, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 0, 2]])
    m = SegmentationMetrics(3, class_names=["a", "b", "c"])
    m.update(pred, truth)
    out = m.compute_metrics()
    assert out["per_class_iou"]["a"] == pytest.approx(1 / 3)
    assert out["per_class_iou"]["b"] == pytest.approx(2 / 4)
    assert math.isnan(out["per_class_iou"]["c"])  # the ignored pixel's prediction does not count
    assert out["mIoU"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert out["pixel_accuracy"] == pytest.approx(3 / 5)


def test_predicted_but_absent_class_scores_zero():
    confusion = torch.tensor([[5, 1], [0, 0]])
    out = metrics_from_confusion(confusion)
    assert out["per_class_iou"]["1"] == 0.0 and out["mIoU"] == pytest.approx((5 / 6 + 0) / 2)


def test_logits_are_argmaxed_and_shapes_checked():
    m = SegmentationMetrics(2)
    logits = torch.tensor([[[[2.0, -1.0]], [[0.0, 3.0]]]])  # (1, 2, 1, 2) → labels [0, 1]
    m.update(logits, torch.tensor([[[0, 1]]]))
    assert m.compute_metrics()["mIoU"] == 1.0
    with pytest.raises(ValueError, match="differ in shape"):
        m.update(torch.zeros(1, 3, 3, dtype=torch.long), torch.zeros(1, 3, 4, dtype=torch.long))
