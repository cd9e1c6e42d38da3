"""scripts/gpu_check.sh rehearsed on the CPU (``--cpu-dry-run``): every step of the GPU check runs
at toy sizes through the same code, so the script cannot rot between the sessions that are lent
a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--cpu-dry-run", "--budget-s", "900"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] and report["machine"]["device"] == "cpu"
    steps = report["steps"]
    assert {name: step["status"] for name, step in steps.items()} == dict.fromkeys(
        ["tests", "peak", "dilation", "profile", "train", "inference", "data", "train_compiled", "inference_compiled"], "ok")
    tests = steps["tests"]["result"]
    assert tests["tests"] >= 10 and tests["skipped"] == tests["tests"], "without a GPU every cuda test is skipped"
    assert steps["peak"]["result"]["matmul_bf16"]["tflops_per_s"] > 0
    assert {c["dilation"] for c in steps["dilation"]["result"]} == {1, 2, 4, 12, 24, 36}
    for profile in steps["profile"]["result"].values():
        assert profile["device_ms_per_step"] > 0 and abs(sum(profile["share_by_kind"].values()) - 1) < 0.01
    assert "aten::" in (out / "profile.txt").read_text()
    train = steps["train"]["result"]["bf16"]
    assert {"atrous torchvision/deeplabv3_resnet101", "torchvision deeplabv3_resnet101"} <= set(train["models"])
    for entry in train["models"].values():
        assert entry["train"]["tflops_per_s"] > 0 and 0 < entry["train"]["mfu"]
    assert train["atrous_over_torchvision_latency"]["paired_median"] > 0
    assert set(steps["inference"]["result"]) == {"fp32", "bf16"}
    assert steps["train_compiled"]["result"]["bf16"]["settings"]["compile"] is True
    data = steps["data"]["result"]
    assert data["samples_per_s"] > 0 and data["pipeline_over_training"] > 0
    log = (out / "gpu_check.log").read_text()
    assert "cuda tests:" in log and "MFU" in log and "samples/s" in log


def test_gpu_check_without_a_gpu_says_how_to_rehearse(tmp_path):
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has a GPU")
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "--cpu-dry-run" in done.stderr
