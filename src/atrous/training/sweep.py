"""``atrous validate --sweep``: DeepLabv3 Tables 4 and 6 for one checkpoint.

One trained model evaluated at output stride 16 and 8 (re-dilated in place, same weights), each
with single-scale inputs, multi-scale inputs (+MS) and multi-scale plus left-right flips
(+MS+flip): six evaluations through :func:`atrous.training.runner.evaluate`, the same sharded
Lightning validation step as ``atrous validate`` (so DDP shards each one). The table keeps the
papers' layout — one row per evaluation, columns ``OS=16 | OS=8 | MS | Flip | mIOU`` — and is
written as ``sweep.md`` and ``sweep.json`` (atomically) in the output folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engines import EngineOptions
from ..evaluation.choices import TTA_PRESETS
from ..evaluation.strategy import EvaluationStrategy
from ..io import atomic_write
from .runner import evaluate, write_metrics

SWEEP_STRIDES = (16, 8)
SWEEP_STRATEGIES = (("single scale", False, False), ("+MS", True, False), ("+MS+flip", True, True))


def sweep_strategies(base: EvaluationStrategy) -> list[EvaluationStrategy]:
    """The six strategies: output stride 16 and 8 × single scale, +MS, +MS+flip. The multi-scale
    scales are ``base``'s when it has several, else DeepLabv3's (0.5 … 1.75); window, overlap,
    averaging and labels are ``base``'s."""
    scales = base.scales if len(base.scales) > 1 else tuple(TTA_PRESETS["deeplabv3"]["scales"])
    return [
        replace(base, tta="sweep", output_stride=stride, scales=scales if multi else (1.0,), flip=flip)
        for stride in SWEEP_STRIDES for _, multi, flip in SWEEP_STRATEGIES
    ]


def sweep(
    config: Mapping[str, Any], checkpoint: str | Path | None, *, stage: str = "val",
    strategy: EvaluationStrategy | None = None, engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` with every :func:`sweep_strategies` row (in ``engine``, built once per
    output stride); rows hold ``output_stride``, ``multi_scale``, ``flip``, ``mIoU`` and the full
    metrics (``metrics``)."""
    rows = []
    for row in sweep_strategies(strategy or EvaluationStrategy()):
        metrics = evaluate(config, checkpoint, stage=stage, strategy=row, engine=engine)
        rows.append({"output_stride": row.output_stride, "multi_scale": len(row.scales) > 1, "flip": row.flip,
                     "scales": list(row.scales), "mIoU": metrics["mIoU"], "metrics": metrics})
    return {"checkpoint": str(checkpoint) if checkpoint else None, "split": stage, "rows": rows}


def markdown_table(result: Mapping[str, Any]) -> str:
    """DeepLabv3 Table 4/6 layout: ``| OS=16 | OS=8 | MS | Flip | mIOU |`` with ✓ marks."""
    lines = ["| OS=16 | OS=8 | MS | Flip | mIOU |", "|:---:|:---:|:---:|:---:|---:|"]
    for row in result["rows"]:
        marks = [row["output_stride"] == 16, row["output_stride"] == 8, row["multi_scale"], row["flip"]]
        lines.append("| " + " | ".join("✓" if m else "" for m in marks) + f" | {100 * row['mIoU']:.2f} |")
    return "\n".join(lines)


def write_sweep(output: Path, result: Mapping[str, Any]) -> tuple[Path, Path]:
    """``sweep.md`` and ``sweep.json`` in ``output``, each written atomically."""
    output = Path(output)
    markdown = markdown_table(result)
    md = atomic_write(output / "sweep.md", lambda tmp: tmp.write_text(markdown + "\n"))
    json_path = output / "sweep.json"
    write_metrics(json_path, result)  # atomic, NaN → null
    return md, json_path


def run_sweep(
    config: Mapping[str, Any], checkpoint: str | Path | None, *, stage: str, strategy: EvaluationStrategy,
    output: Path, report: bool, engine: EngineOptions | None = None,
) -> int:
    """The command: sweep, then (rank 0) write and print the table."""
    result = sweep(config, checkpoint, stage=stage, strategy=strategy, engine=engine)
    if report:
        write_sweep(output, result)
        print(markdown_table(result))
        print(f"Wrote {output / 'sweep.md'} and {output / 'sweep.json'}")
    return 0
