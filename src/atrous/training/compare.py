"""``atrous compare``: train several configs the same way, over several seeds, and tabulate them.

Each config is trained into ``<output>/<config stem>`` — ``<output>/<config stem>/seed<s>`` when
seeds are given (``train.seed`` changes initialisation, data order and augmentation; the data
stay the same) — and an interrupted comparison resumes where it stopped. Results go to
``<output>/results.json`` (every run) and ``<output>/results.md`` (mean ± sample standard
deviation over seeds): parameters, GFLOPs, the head's receptive field, mIoU and chosen classes' IoU.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_write
from ..models import build_model
from ..models.complexity import model_info
from .experiment import Experiment
from .runner import fit


def compare(
    configs: Sequence[Path | Experiment],
    output: Path,
    classes: Sequence[str] = (),
    overrides: Sequence[str] = (),
    seeds: Sequence[int] = (),
) -> list[dict[str, Any]]:
    """Train every config (for every seed) and write ``results.json`` and ``results.md``.

    Returns one entry per config with ``runs`` (one per seed: ``seed``, ``mIoU``,
    ``per_class_iou``) and their means ``mIoU`` and ``per_class_iou``. ``configs``: config
    files, or experiments loaded from them (the command line's; ``overrides`` are applied to them).
    """
    experiments = [c if isinstance(c, Experiment) else Experiment.load(c) for c in configs]
    configs = [Path(e.source) for e in experiments]
    stems = [Path(c).stem for c in configs]
    if len(set(stems)) != len(stems):
        raise ConfigError(f"config file names must differ (each names its run folder), got {stems}")
    runs: dict[Path, list[dict[str, Any]]] = {path: [] for path in configs}
    cfgs: dict[Path, Experiment] = {}
    for seed in seeds or (None,):  # seeds outermost: the first seed of every config comes first
        for path, experiment in zip(configs, experiments, strict=True):
            run_dir = output / path.stem if seed is None else output / path.stem / f"seed{seed}"
            extra = [] if seed is None else [f"train.seed={seed}"]
            cfg = cfgs[path] = experiment.with_overrides([*overrides, *extra, f"train.output_dir={run_dir}"])
            resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
            metrics = fit(cfg, resume=resume, overwrite=not resume)  # the comparison owns its run folders
            runs[path].append({"seed": cfg.train.seed, "mIoU": metrics["mIoU"],
                               "pixel_accuracy": metrics["pixel_accuracy"], "per_class_iou": metrics["per_class_iou"]})
    results = []
    for path in configs:
        cfg, config_runs = cfgs[path], runs[path]
        size = tuple(cfg.data.dataset.get("image_size", (512, 1024)))
        info = model_info(build_model(cfg.model), size)
        results.append({
            "config": str(path),
            "head": cfg.model.head.name,
            "params_total": info["params_total"],
            "gflops": info["gflops"],
            "receptive_field": info["receptive_field"],
            "global_context": info["global_context"],
            "mIoU": _mean([r["mIoU"] for r in config_runs]),
            "per_class_iou": {
                name: _mean([r["per_class_iou"][name] for r in config_runs]) for name in config_runs[0]["per_class_iou"]
            },
            "runs": config_runs,
        })
    text = json.dumps(results, indent=2, default=lambda v: None)
    atomic_write(output / "results.json", lambda tmp: tmp.write_text(text + "\n"))
    table = markdown_table(results, classes)
    atomic_write(output / "results.md", lambda tmp: tmp.write_text(table + "\n"))
    return results


def _mean(values: Sequence[float | None]) -> float:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def _spread(values: Sequence[float | None]) -> str:
    """``mean`` or ``mean ± std`` in percent (NaN and missing values left out)."""
    finite = [100 * v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return "n/a"
    if len(finite) == 1:
        return f"{finite[0]:.1f}"
    return f"{statistics.fmean(finite):.1f} ± {statistics.stdev(finite):.1f}"


def markdown_table(results: Sequence[dict[str, Any]], classes: Sequence[str] = ()) -> str:
    """One row per config; with several seeds each cell is mean ± sample standard deviation."""
    seeds = max(len(r["runs"]) for r in results) if results else 0
    head = "| config | head | params | GFLOPs | RF | seeds | mIoU | " + " | ".join(f"{c} IoU" for c in classes) + " |"
    rule = "|---|---|---:|---:|---:|---:|---:|" + "---:|" * len(classes)
    rows = [head, rule]
    for r in results:
        rf = f"{r['receptive_field']}" + (" + global" if r["global_context"] else "")
        runs = r["runs"]
        cells = [f"`{Path(r['config']).stem}`", r["head"], f"{r['params_total'] / 1e6:.2f}M", f"{r['gflops']:.1f}",
                 rf, str(len(runs)), _spread([x["mIoU"] for x in runs])]
        cells += [_spread([x["per_class_iou"].get(c) for x in runs]) for c in classes]
        rows.append("| " + " | ".join(cells) + " |")
    if seeds > 1:
        rows.append("")
        rows.append(f"Mean ± sample standard deviation over {seeds} training seeds (same data).")
    return "\n".join(rows)
