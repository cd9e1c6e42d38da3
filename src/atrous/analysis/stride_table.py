"""Output stride × test-time strategy table (DeepLabv3 Tables 1, 4 and 6).

One trained model is evaluated at output stride 8, 16 and 32 — the backbone re-dilated in place,
same weights (:func:`atrous.evaluation.inference.output_stride`; ASPP rates scale with the
stride, DenseASPP rates stay) — each with four test-time strategies: single scale, + left-right
flip, + multi-scale inputs (DeepLabv3: scales 0.5 … 1.75), + both; probabilities are averaged
(:func:`atrous.evaluation.inference.predict_probabilities`). Each batch is predicted by
:func:`atrous.evaluation.strategy.predict_scores`, the prediction of ``atrous validate``'s
Lightning step; ``atrous validate --sweep`` evaluates the whole split that way (sharded across
processes) at output strides 16 and 8 — this analysis is its quick single-process version on a
subset, with output stride 32 and flip-only columns added.

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
from ..evaluation.choices import TTA_PRESETS
from ..evaluation.inference import output_stride
from ..evaluation.metrics import SegmentationMetrics
from ..evaluation.strategy import EvaluationStrategy, predict_scores
from ..models.segmentor import Segmentor
from .common import batches, model_device, plt, save_figure

DEEPLABV3_SCALES: tuple[float, ...] = tuple(TTA_PRESETS["deeplabv3"]["scales"])
STRATEGIES = ("single scale", "+ flip", "+ multi-scale", "+ multi-scale + flip")


def strategy_options(name: str, scales: Sequence[float]) -> dict[str, Any]:
    """``predict_probabilities`` keyword arguments of a strategy in :data:`STRATEGIES`."""
    multi = "multi-scale" in name
    return {"scales": tuple(scales) if multi else (1.0,), "flip": "flip" in name}


@torch.no_grad()
def stride_table(
    model: Segmentor, dataset: SegmentationDataset, indices: Sequence[int], *,
    output_strides: Sequence[int] = (8, 16, 32), scales: Sequence[float] = DEEPLABV3_SCALES,
    strategies: Sequence[str] = STRATEGIES, batch_size: int = 4,
) -> dict[str, Any]:
    """mIoU (and per-class IoU) of ``model`` on ``indices`` per output stride and strategy.

    Rows: ``{"output_stride", "strategy", "scales", "flip", "mIoU", "per_class_iou",
    "feature_size"}`` (``feature_size``: the head's output ``(h, w)`` on the first image, which
    the stride sets); an output stride the model cannot take gives a row with ``"error"``.
    """
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    model.eval()
    classes = dataset.classes
    trained = model.output_stride
    first = next(batches(dataset, indices[:1], 1))[1]
    rows: list[dict[str, Any]] = []
    for stride in output_strides:
        try:
            with output_stride(model, stride):
                feature_size = list(model.forward_head_features(first.to(model_device(model)))[0].shape[-2:])
        except ValueError as err:
            rows.append({"output_stride": stride, "error": str(err)})
            continue
        for name in strategies:
            options = strategy_options(name, scales)
            strategy = EvaluationStrategy(tta=name, output_stride=stride, **options)
            metrics = SegmentationMetrics(classes.num_classes, classes.names, classes.ignore_index)
            for _, x, y in batches(dataset, indices, batch_size):
                scores, _ = predict_scores(model, x.to(model_device(model)), tuple(y.shape[-2:]), strategy)
                metrics.update(scores.argmax(1).cpu(), y)
            result = metrics.compute_metrics()
            rows.append({"output_stride": stride, "strategy": name, "scales": list(options["scales"]),
                         "flip": options["flip"], "feature_size": feature_size, "mIoU": result["mIoU"],
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
    """The table as markdown: one row per output stride, one column per strategy (mIoU %)."""
    strategies = list(dict.fromkeys(r["strategy"] for r in result["rows"] if "error" not in r))
    lines = ["| output stride | feature map | " + " | ".join(strategies) + " |",
             "|---:|---:|" + "---:|" * len(strategies)]
    for stride in dict.fromkeys(r["output_stride"] for r in result["rows"]):
        rows = [r for r in result["rows"] if r["output_stride"] == stride]
        mark = " (trained)" if stride == result["trained_output_stride"] else ""
        if "error" in rows[0]:
            lines.append(f"| {stride}{mark} | – | " + " | ".join("n/a" for _ in strategies) + " |")
            continue
        size = "×".join(map(str, rows[0]["feature_size"]))
        cells = {r["strategy"]: f"{100 * r['mIoU']:.2f}" for r in rows}
        lines.append(f"| {stride}{mark} | {size} | " + " | ".join(cells.get(s, "") for s in strategies) + " |")
    return "\n".join(lines)


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
