"""Output stride × test-time strategy table (DeepLabv3 Tables 4 and 6) on a subset of images.

The grid and the table are :mod:`atrous.evaluation.stride_sweep`'s, as ``atrous validate
--sweep`` writes them; this analysis is its quick single-process version on a subset, at output
strides 8, 16 and 32 with a flip-only column, and a figure. Each output stride runs in a torch
engine built at it (the model re-dilated, same weights; ASPP rates scale with the stride,
DenseASPP rates stay) and each batch is predicted by
:func:`atrous.evaluation.strategy.predict_scores`, the prediction of ``atrous validate``'s
Lightning step.

What this measures: Tables 4 and 6 of DeepLabv3 (train at 16, *evaluate* at 8, add MS and flip).
Table 1 is different — there each output stride is a separately *trained* network; a model
trained at one stride and evaluated at another mixes both effects, since its weights were
learned for the trained stride's dilations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.base import SegmentationDataset
from ..engines import EngineOptions, build_engine
from ..evaluation.metrics import SegmentationMetrics
from ..evaluation.strategy import EvaluationStrategy, predict_scores
from ..evaluation.stride_sweep import DEEPLABV3_SCALES, STRATEGIES, sweep_row, sweep_strategies
from ..evaluation.stride_sweep import markdown_table as sweep_table
from ..models.segmentor import Segmentor
from .common import batches, model_device, plt, save_figure


@torch.no_grad()
def stride_table(
    model: Segmentor, dataset: SegmentationDataset, indices: Sequence[int], *,
    output_strides: Sequence[int] = (8, 16, 32), scales: Sequence[float] = DEEPLABV3_SCALES,
    strategies: Sequence[str] = tuple(STRATEGIES), batch_size: int = 4,
) -> dict[str, Any]:
    """mIoU (and per-class IoU) of ``model`` on ``indices`` per output stride and strategy.

    Rows: :func:`~atrous.evaluation.stride_sweep.sweep_row`'s keys, ``per_class_iou`` and
    ``feature_size`` (the head's output ``(h, w)`` on the first image, which the stride sets); an
    output stride the model cannot take gives a row with ``"error"``.
    """
    model.eval()
    classes = dataset.classes
    trained = model.output_stride
    device = model_device(model)
    first = next(batches(dataset, indices[:1], 1))[1]
    grid = sweep_strategies(EvaluationStrategy(), output_strides, strategies, scales)
    rows: list[dict[str, Any]] = []
    for stride in output_strides:
        try:
            engine = build_engine(model, EngineOptions(output_stride=stride, memory_format="contiguous"), device, log=False)
        except ValueError as err:
            rows.append({"output_stride": stride, "error": str(err)})
            continue
        feature_size = list(engine.model.forward_head_features(first.to(device))[0].shape[-2:])
        for strategy in (s for s in grid if s.output_stride == stride):
            metrics = SegmentationMetrics(classes.num_classes, classes.names, classes.ignore_index)
            for _, x, y in batches(dataset, indices, batch_size):
                scores, _ = predict_scores(engine, x.to(device), tuple(y.shape[-2:]), strategy)
                metrics.update(scores.argmax(1).cpu(), y)
            result = metrics.compute_metrics()
            rows.append({**sweep_row(strategy, result), "feature_size": feature_size,
                         "per_class_iou": result["per_class_iou"]})
    assert model.output_stride == trained
    return {
        "trained_output_stride": trained,
        "num_images": len(indices),
        "image_size": list(first.shape[-2:]),
        "scales": list(scales),
        "rows": rows,
        "measured": (
            f"one model trained at output stride {trained}, evaluated at each output stride by re-dilating "
            "the backbone (same weights): DeepLabv3 Tables 4/6 (evaluation-time stride, multi-scale inputs, "
            "flips; probabilities averaged). Not Table 1, where every output stride is a separately trained network."
        ),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The table in DeepLabv3's Table 4/6 layout (:func:`atrous.evaluation.stride_sweep.markdown_table`)."""
    return sweep_table(result["rows"], result["trained_output_stride"])


def plot_stride_table(result: dict[str, Any], output: Path, title: str = "") -> Path:
    """Grouped bars of mIoU: output strides on x, one bar per strategy, values on the bars."""
    rows = [r for r in result["rows"] if "error" not in r]
    strides = list(dict.fromkeys(r["output_stride"] for r in result["rows"]))
    strategies = list(dict.fromkeys(r["strategy"] for r in rows))
    fig, ax = plt.subplots(figsize=(8.5, 4.6))
    width = 0.8 / max(1, len(strategies))
    colours = plt.get_cmap("Blues")(np.linspace(0.35, 0.9, len(strategies)))
    top = 0.0
    for k, name in enumerate(strategies):
        values = [next((100 * r["mIoU"] for r in rows if r["output_stride"] == s and r["strategy"] == name), np.nan)
                  for s in strides]
        x = np.arange(len(strides)) + (k - (len(strategies) - 1) / 2) * width
        bars = ax.bar(x, values, width, color=colours[k], edgecolor="0.2", lw=0.5, label=name)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        top = max(top, np.nanmax(values) if not np.all(np.isnan(values)) else 0)
    labels = []
    for s in strides:
        row = next((r for r in rows if r["output_stride"] == s), None)
        size = "×".join(map(str, row["feature_size"])) if row else "n/a"
        labels.append(f"OS {s}{' (trained)' if s == result['trained_output_stride'] else ''}\nfeatures {size}")
    ax.set_xticks(np.arange(len(strides)), labels)
    ax.set(ylabel="mIoU (%)", ylim=(0, min(100, top * 1.15 + 2)),
           title=title or f"Output stride and test-time strategies ({result['num_images']} images; "
                          "DeepLabv3 Tables 4/6)")
    ms = ", ".join(f"{s:g}" for s in result["scales"])
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title=f"multi-scale: {ms}", title_fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return save_figure(fig, output)
