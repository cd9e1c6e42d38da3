"""DeepLabv3 Tables 4 and 6: one trained model evaluated at several output strides (re-dilated,
same weights), each with single-scale inputs, multi-scale inputs (+MS) and left-right flips.

One grid of strategies (:func:`sweep_strategies`) and one table (:func:`markdown_table`, the
papers' layout: ``| OS=16 | OS=8 | MS | Flip | mIOU |``), whoever evaluates the rows:
``atrous validate --sweep`` (:mod:`atrous.training.sweep`: the whole split through the sharded
Lightning validation step, output strides 16 and 8) and ``atrous analyze stride``
(:mod:`atrous.analysis.stride_table`: a subset in one process, output strides 8, 16 and 32 and a
flip-only column). Each row's engine is built at its output stride
(:class:`atrous.engines.EngineOptions`).

On a model trained at 16 and evaluated at 8 without fine-tuning this is Table 4; Table 1 is
different — there each output stride is a separately *trained* network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from .choices import TTA_PRESETS
from .strategy import EvaluationStrategy

DEEPLABV3_SCALES: tuple[float, ...] = tuple(TTA_PRESETS["deeplabv3"]["scales"])
# name → (multi-scale inputs, left-right flips)
STRATEGIES: dict[str, tuple[bool, bool]] = {
    "single scale": (False, False),
    "+ flip": (False, True),
    "+ multi-scale": (True, False),
    "+ multi-scale + flip": (True, True),
}
TABLE_STRATEGIES = ("single scale", "+ multi-scale", "+ multi-scale + flip")  # DeepLabv3 Tables 4/6


def sweep_strategies(
    base: EvaluationStrategy, output_strides: Sequence[int], strategies: Sequence[str] = TABLE_STRATEGIES,
    scales: Sequence[float] | None = None,
) -> list[EvaluationStrategy]:
    """One strategy per output stride × strategy name (:data:`STRATEGIES`), in that order. The
    multi-scale scales are ``scales``, else ``base``'s when it has several, else DeepLabv3's
    (0.5 … 1.75); window, overlap, averaging and labels are ``base``'s; ``tta`` names the strategy."""
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    if scales is None:
        scales = base.scales if len(base.scales) > 1 else DEEPLABV3_SCALES
    scales = tuple(float(s) for s in scales)
    rows = []
    for stride in output_strides:
        for name in strategies:
            multi, flip = STRATEGIES[name]
            rows.append(replace(base, tta=name, output_stride=stride, scales=scales if multi else (1.0,), flip=flip))
    return rows


def sweep_row(strategy: EvaluationStrategy, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The table's row of ``strategy`` evaluated as ``metrics``."""
    return {"output_stride": strategy.output_stride, "strategy": strategy.tta,
            "multi_scale": len(strategy.scales) > 1, "flip": strategy.flip,
            "scales": list(strategy.scales), "mIoU": metrics["mIoU"]}


def markdown_table(rows: Sequence[Mapping[str, Any]], trained: int | None = None) -> str:
    """DeepLabv3 Table 4/6 layout: one ✓ column per output stride (in the rows' order; ``trained``
    marks the stride the model was trained at), ``MS``, ``Flip``, ``mIOU`` (%). A row with an
    ``"error"`` (a stride the model cannot take) shows ``n/a``."""
    strides = list(dict.fromkeys(row["output_stride"] for row in rows))
    names = [f"OS={s}" + (" (trained)" if s == trained else "") for s in strides]
    lines = ["| " + " | ".join([*names, "MS", "Flip", "mIOU"]) + " |",
             "|" + ":---:|" * (len(strides) + 2) + "---:|"]
    for row in rows:
        marks = [row["output_stride"] == s for s in strides]
        if "error" in row:
            cells = ["✓" if m else "" for m in marks] + ["", "", "n/a"]
        else:
            cells = ["✓" if m else "" for m in [*marks, row["multi_scale"], row["flip"]]] + [f"{100 * row['mIoU']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
