"""``atrous validate --sweep``: DeepLabv3 Tables 4 and 6 for one checkpoint.

The grid and the table of :mod:`atrous.evaluation.stride_sweep` at output strides 16 and 8 (single
scale, +MS, +MS+flip): six evaluations through :func:`atrous.training.runner.evaluate`, the same
sharded Lightning validation step as ``atrous validate`` (so DDP shards each one), written as
``sweep.md`` and ``sweep.json`` (atomically) in the output folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..engines import EngineOptions
from ..evaluation.strategy import EvaluationStrategy
from ..evaluation.stride_sweep import markdown_table, sweep_row, sweep_strategies
from ..io import atomic_write
from .runner import evaluate, write_metrics

SWEEP_STRIDES = (16, 8)


def sweep(
    config: Mapping[str, Any], checkpoint: str | Path | None, *, stage: str = "val",
    strategy: EvaluationStrategy | None = None, engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` with every row of the Tables 4/6 grid
    (:func:`atrous.evaluation.stride_sweep.sweep_strategies` at :data:`SWEEP_STRIDES`; in
    ``engine``, built at each row's output stride); rows hold ``output_stride``, ``strategy``,
    ``multi_scale``, ``flip``, ``scales``, ``mIoU`` and the full metrics (``metrics``)."""
    rows = []
    for row in sweep_strategies(strategy or EvaluationStrategy(), SWEEP_STRIDES):
        metrics = evaluate(config, checkpoint, stage=stage, strategy=row, engine=engine)
        rows.append({**sweep_row(row, metrics), "metrics": metrics})
    return {"checkpoint": str(checkpoint) if checkpoint else None, "split": stage, "rows": rows}


def write_sweep(output: Path, result: Mapping[str, Any]) -> tuple[Path, Path]:
    """``sweep.md`` and ``sweep.json`` in ``output``, each written atomically."""
    output = Path(output)
    markdown = markdown_table(result["rows"])
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
        print(markdown_table(result["rows"]))
        print(f"Wrote {output / 'sweep.md'} and {output / 'sweep.json'}")
    return 0
