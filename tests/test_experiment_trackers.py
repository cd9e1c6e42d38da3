"""``train.loggers``: MLflow (a local file store in the run folder) and Weights & Biases (offline)
receive the metrics the CSV log holds; a tracker that is not installed, or an unknown name, is
one clear error."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from test_short_runs import config

from atrous.cli import main
from atrous.errors import ConfigError
from atrous.training.runner import fit
from atrous.training.train_section import TrainConfig


def _csv_last(run: Path, key: str) -> float:
    rows = [r for r in csv.DictReader(open(run / "csv" / "metrics.csv")) if r.get(key)]
    return float(rows[-1][key])


def test_mlflow_keeps_the_runs_metrics_in_the_run_folder(tmp_path):
    mlflow = pytest.importorskip("mlflow")
    run = tmp_path / "run"
    fit(config(run, loggers=["csv", {"name": "mlflow", "experiment_name": "streets"}]))
    client = mlflow.tracking.MlflowClient(tracking_uri=(run / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("streets")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.run_name == "run"
    assert found.data.metrics["val/mIoU"] == pytest.approx(_csv_last(run, "val/mIoU"))
    assert found.data.metrics["train/loss_epoch"] == pytest.approx(_csv_last(run, "train/loss_epoch"))
    assert not (run / "tb").exists()  # only the loggers asked for


def test_wandb_runs_offline_into_the_run_folder(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "run"
    try:
        fit(config(run, loggers=["csv", "wandb"]))
        assert wandb.run is not None and wandb.run.offline
        assert wandb.run.summary["val/mIoU"] == pytest.approx(_csv_last(run, "val/mIoU"))
    finally:
        wandb.finish()
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.mark.parametrize("tracker", ["mlflow", "wandb"])
def test_a_tracker_that_is_not_installed_names_the_pip_install(tracker, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == tracker else find_spec(name, *a))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config(tmp_path / "run", loggers=["csv", tracker])))
    assert main(["fit", "--config", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"train.loggers: {tracker} needs the {tracker} package: pip install \"atrous[{tracker}]\"" in err
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("loggers, message", [
    (["tensorbord"], re.escape("unknown logger 'tensorbord' (did you mean 'tensorboard'?)")),
    ("csv", "train.loggers: .*list"),
    ([{"name": "csv", "flush_every": 3}], "train.loggers: csv: unknown key.*'flush_every'.*valid keys: .*'flush_logs_every_n_steps'"),
])
def test_bad_logger_entries_are_config_errors(loggers, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        fit(config(tmp_path, loggers=loggers))


def test_the_default_loggers_are_tensorboard_and_csv():
    assert TrainConfig().loggers == ("tensorboard", "csv")
