"""Evaluation: confusion-matrix metrics and test-time inference strategies (multi-scale inputs,
flips, sliding windows; the output stride is the engine's, :mod:`atrous.engines`).

The names below import torch (and the metrics torchmetrics) on first use; the command line reads
this floor's choices from :mod:`.choices` when it builds its parser.
"""

from ..lazy import lazy_attributes
from .choices import TTA_PRESETS

__all__ = [
    "TTA_PRESETS",
    "SegmentationMetrics",
    "metrics_from_confusion",
    "predict",
    "predict_probabilities",
]
__getattr__, __dir__ = lazy_attributes(__name__, {
    "SegmentationMetrics": ".metrics", "metrics_from_confusion": ".metrics",
    "predict": ".inference", "predict_probabilities": ".inference",
})
