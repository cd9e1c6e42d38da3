"""Quiet by default: a two-step ``atrous fit`` and an ``atrous validate`` print the results and
nothing of Lightning's (no tips, adverts, info lines or the warnings atrous makes moot);
``--verbose`` shows them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_short_runs import config

LIGHTNING_NOISE = ("💡 Tip", "litlogger", "litmodels", "GPU available", "Trainer(limit_train_batches",
                   "does not have many workers", "logging interval", "could not find the monitored key", "LeafSpec")


def _atrous(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("atrous")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def quiet_fit(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("quiet")
    (root / "c.yaml").write_text(yaml.safe_dump(config(root / "run", max_steps=2)))  # inside the first epoch
    return root, _atrous("fit", "--config", "c.yaml", cwd=root)


def test_a_two_step_fit_prints_nothing_of_lightnings(quiet_fit):
    root, done = quiet_fit
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr == ""
    assert "mIoU" in done.stdout and not any(noise in done.stdout for noise in LIGHTNING_NOISE)


def test_validate_with_a_strategy_prints_nothing_of_lightnings(quiet_fit):
    root, _ = quiet_fit
    done = _atrous("validate", "--checkpoint", "run/checkpoints/best.ckpt", "--tta", "deeplabv3", cwd=root)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    assert "evaluated with" in done.stdout


def test_verbose_shows_everything(quiet_fit):
    root, _ = quiet_fit
    done = _atrous("fit", "--config", "c.yaml", "--overwrite", "--verbose", cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]
    for noise in ("💡 Tip", "GPU available", "could not find the monitored key"):
        assert noise in done.stderr
