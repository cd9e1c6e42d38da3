"""Evaluation: confusion-matrix metrics (and, later, test-time inference strategies)."""

from .metrics import SegmentationMetrics, metrics_from_confusion

__all__ = ["SegmentationMetrics", "metrics_from_confusion"]
