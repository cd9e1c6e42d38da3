"""Evaluation: confusion-matrix metrics and test-time inference strategies (multi-scale inputs,
flips, sliding windows, output-stride switch)."""

from .inference import TTA_PRESETS, output_stride, predict, predict_probabilities
from .metrics import SegmentationMetrics, metrics_from_confusion

__all__ = [
    "TTA_PRESETS",
    "SegmentationMetrics",
    "metrics_from_confusion",
    "output_stride",
    "predict",
    "predict_probabilities",
]
