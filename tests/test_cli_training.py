"""The training CLI: fit under DDP with 2 processes, validate with 1 and 2 processes to the
same metrics, per-class tables, metrics.json, and clear errors for mislaid data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from atrous.cli import main

CONFIG = {
    "model": {
        "num_classes": 19,
        "backbone": {"name": "resnet18", "output_stride": 16},
        "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
    },
    "data": {
        "dataset": {"name": "synthetic", "image_size": [64, 128]},
        "train": {"split": "train", "length": 8},
        "val": {"split": "val", "length": 5},  # odd: an uneven split across 2 processes
        "batch_size": 2,
        "num_workers": 0,
    },
    "train": {"max_epochs": 1, "progress_bar": False, "accelerator": "cpu"},
}


def _atrous(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("atrous")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "output_dir": str(root / "run")}}))
    done = _atrous("fit", "--config", str(config), "train.devices=2", "train.strategy=ddp", cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("mIoU") == 1, "only rank 0 reports"
    assert "sync_dist" not in done.stderr and "💡 Tip" not in done.stderr, "quiet by default, also under DDP"
    return root, config


@pytest.mark.slow
def test_ddp_fit_writes_one_run(trained):
    root, _ = trained
    assert (root / "run" / "checkpoints" / "best.ckpt").is_file()
    assert json.loads((root / "run" / "metrics.json").read_text())["split"] == "val"
    assert not (root / "run" / ".atrous-fit.lock").exists(), "the run lock is released (and the DDP workers did not refuse rank 0's)"


@pytest.mark.slow
def test_validate_with_two_processes_equals_one(trained):
    root, config = trained
    ckpt = str(root / "run" / "checkpoints" / "best.ckpt")
    one = _atrous("validate", "--config", str(config), "--checkpoint", ckpt, "--output", str(root / "one"), cwd=root)
    two = _atrous(
        "validate", "--config", str(config), "--checkpoint", ckpt, "--output", str(root / "two"),
        "train.devices=2", "train.strategy=ddp", cwd=root,
    )
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-1000:], two.stderr[-1000:])
    a = json.loads((root / "one" / "metrics.json").read_text())
    b = json.loads((root / "two" / "metrics.json").read_text())
    assert a["num_pixels"] == b["num_pixels"] == 5 * 64 * 128
    assert a["mIoU"] == b["mIoU"] and a["per_class_iou"] == b["per_class_iou"]
    assert "car" in one.stdout and "mIoU" in one.stdout  # the per-class table


def test_validate_in_process_prints_table_and_writes_metrics(trained, capsys):
    root, config = trained
    out = root / "inproc"
    assert main(["validate", "--config", str(config), "--checkpoint", str(root / "run/checkpoints/best.ckpt"), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    assert {"mIoU", "pixel_accuracy", "per_class_iou"} <= set(saved)
    assert f"{100 * saved['mIoU']:6.2f}%" in printed


def test_mislaid_dataset_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "cityscapes.yaml"
    cfg = {**CONFIG, "data": {**CONFIG["data"], "dataset": {"name": "cityscapes", "root": str(tmp_path / "nowhere")}}}
    cfg["data"].pop("train"), cfg["data"].pop("val")
    config.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(config), f"train.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err
    assert not (tmp_path / "run").exists()


def test_bad_trainer_option_is_a_clear_error(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert main(["fit", "--config", str(config), "train.precision=fp7", f"train.output_dir={tmp_path}/run"]) == 2
    err = capsys.readouterr().err
    assert "train.precision: unknown precision 'fp7'" in err and "'bf16-mixed'" in err
    assert main(["fit", "--config", str(config), "train.bogus=1"]) == 2
    assert "valid keys" in capsys.readouterr().err


@pytest.mark.slow
def test_compare_over_seeds_tabulates_mean_and_spread(tmp_path, capsys):
    """`atrous compare --seeds`: one run per (config, seed) in its own folder, different seeds
    train differently, the table shows mean ± std, and a repeated call resumes instead of retraining."""
    base = {**CONFIG, "data": {**CONFIG["data"], "train": {"split": "train", "length": 4}, "val": {"split": "val", "length": 2}}}
    fcn = tmp_path / "fcn.yaml"
    fcn.write_text(yaml.safe_dump({**base, "model": {**base["model"], "head": {"name": "fcn"}}}))
    dense = tmp_path / "dense.yaml"
    dense.write_text(yaml.safe_dump(base))
    out = tmp_path / "cmp"
    args = ["compare", str(fcn), str(dense), "--output", str(out), "--classes", "road", "--seeds", "0", "1"]
    assert main(args) == 0
    assert "± " in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [r["head"] for r in results] == ["fcn", "denseaspp"]
    for r in results:
        runs = r["runs"]
        assert [x["seed"] for x in runs] == [0, 1]
        assert runs[0]["per_class_iou"] != runs[1]["per_class_iou"] or runs[0]["mIoU"] != runs[1]["mIoU"]
        assert r["mIoU"] == pytest.approx(sum(x["mIoU"] for x in runs) / 2)
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/checkpoints/last.ckpt")}
    assert len(stamps) == 4
    assert main(args) == 0  # resumes: every run has finished, nothing is retrained
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((out / "results.json").read_text())[0]["runs"] == results[0]["runs"]
    assert main(["compare", str(fcn), str(fcn), "--output", str(out)]) == 2  # same run folder twice
    assert "names its run folder" in capsys.readouterr().err
