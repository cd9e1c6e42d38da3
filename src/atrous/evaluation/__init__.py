"""Evaluation: confusion-matrix metrics and test-time inference strategies (multi-scale inputs,
flips, sliding windows, output-stride switch).

The metrics (torchmetrics, seconds to import) load on first use, so the command line can read
this floor's constants (``TTA_PRESETS``, the strategy's choices) when it builds its parser.
"""

from typing import Any

from .inference import TTA_PRESETS, output_stride, predict, predict_probabilities

_METRICS = ("SegmentationMetrics", "metrics_from_confusion")

__all__ = [
    "TTA_PRESETS",
    "SegmentationMetrics",
    "metrics_from_confusion",
    "output_stride",
    "predict",
    "predict_probabilities",
]


def __getattr__(name: str) -> Any:
    if name in _METRICS:
        from . import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
