"""``atrous compare``: train several configs the same way and tabulate them.

Each config is trained into ``<output>/<config stem>`` (an interrupted comparison resumes) and
the results go to ``<output>/results.json`` and ``<output>/results.md``: parameters, GFLOPs,
the head's receptive field, mIoU and the IoU of chosen classes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..analysis.complexity import model_info
from ..config import load_config
from ..io import atomic_write
from ..models import build_model
from .runner import fit


def compare(configs: Sequence[Path], output: Path, classes: Sequence[str] = (), overrides: Sequence[str] = ()) -> list[dict[str, Any]]:
    results = []
    for path in configs:
        run_dir = output / path.stem
        cfg = load_config(path, [f"train.output_dir={run_dir}", *overrides])
        resume = (run_dir / "checkpoints" / "last.ckpt").is_file()
        metrics = fit(cfg, resume=resume)
        size = tuple(cfg["data"]["dataset"].get("image_size", (512, 1024)))
        info = model_info(build_model(cfg), size)
        results.append({
            "config": str(path),
            "head": cfg["model"]["head"]["name"],
            "params_total": info["params_total"],
            "gflops": info["gflops"],
            "receptive_field": info["receptive_field"],
            "global_context": info["global_context"],
            "mIoU": metrics["mIoU"],
            "pixel_accuracy": metrics["pixel_accuracy"],
            "per_class_iou": metrics["per_class_iou"],
        })
    text = json.dumps(results, indent=2, default=lambda v: None)
    atomic_write(output / "results.json", lambda tmp: tmp.write_text(text + "\n"))
    table = markdown_table(results, classes)
    atomic_write(output / "results.md", lambda tmp: tmp.write_text(table + "\n"))
    return results


def markdown_table(results: Sequence[dict[str, Any]], classes: Sequence[str] = ()) -> str:
    def pct(v: float | None) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"

    head = "| config | head | params | GFLOPs | RF | mIoU | " + " | ".join(f"{c} IoU" for c in classes) + " |"
    rule = "|---|---|---:|---:|---:|---:|" + "---:|" * len(classes)
    rows = [head, rule]
    for r in results:
        rf = f"{r['receptive_field']}" + (" + global" if r["global_context"] else "")
        cells = [f"`{Path(r['config']).stem}`", r["head"], f"{r['params_total'] / 1e6:.2f}M", f"{r['gflops']:.1f}", rf, pct(r["mIoU"])]
        cells += [pct(r["per_class_iou"].get(c)) for c in classes]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)
