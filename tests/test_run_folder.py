"""A run owns its output folder: a finished run is never replaced silently, two runs never
share a folder, a bad --resume file is one clear line (and pickled code never runs), a full
disk says so, and the CSV log a resumed run continues keeps its rows."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from lightning.pytorch.loggers import CSVLogger, Logger
from test_training import tiny_config

from atrous.cli import main
from atrous.errors import DiskFullError, InputError, OutputExistsError
from atrous.training.callbacks import AtomicCheckpointIO
from atrous.training.loggers import AppendingCSVWriter, ResumableCSVLogger, truncate_metrics
from atrous.training.run_folder import LOCK_NAME, RunLock, claim_output_dir
from atrous.training.runner import fit


def small_config(out: Path) -> dict:
    cfg = tiny_config(out, max_epochs=1)
    cfg["model"]["head"] = {"name": "fcn"}
    cfg["model"].pop("aux_head")
    cfg["data"]["train"]["length"] = 4
    cfg["data"]["val"]["length"] = 2
    return cfg


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch run (its folder is copied by tests that change it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    fit(small_config(run))
    return run


def test_fit_refuses_a_folder_that_holds_a_run(finished, tmp_path, capsys):
    before = {p: _digest(p) for p in (finished / "metrics.json", finished / "checkpoints" / "best.ckpt",
                                      finished / "csv" / "metrics.csv")}
    with pytest.raises(OutputExistsError, match="--resume.*--overwrite"):
        fit(small_config(finished))
    config = _write_config(tmp_path / "small.yaml", small_config(finished))
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atrous: error:") and "already holds a training run" in err and "\n" not in err
    assert {p: _digest(p) for p in before} == before, "the finished run is untouched"
    assert not (finished / LOCK_NAME).exists()


def test_overwrite_moves_the_previous_run_aside_and_starts_a_clean_log(tmp_path):
    run = tmp_path / "run"
    fit(small_config(run))
    old = {name: _digest(run / name) for name in ("metrics.json", "checkpoints/best.ckpt", "csv/metrics.csv")}
    (run / "notes.txt").write_text("mine")
    fit(small_config(run), overwrite=True)
    (aside,) = run.glob("replaced-*")
    assert {name: _digest(aside / name) for name in old} == old, "the old run is kept, not deleted"
    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    val_rows = [r for r in rows if r.get("val/mIoU")]
    assert len(val_rows) == 1, "one run's rows, not two"
    assert (run / "notes.txt").read_text() == "mine", "files fit does not write are left alone"


def test_resume_and_overwrite_exclude_each_other(tmp_path):
    with pytest.raises(InputError, match="exclude"):
        claim_output_dir(tmp_path, resume=True, overwrite=True)


class NestedFit(L.Callback):
    """Starts a second run into the same folder while the first one trains."""

    def __init__(self, config: dict) -> None:
        self.config, self.error = config, None

    def on_train_start(self, trainer, pl_module):
        try:
            fit(self.config, overwrite=True)
        except OutputExistsError as err:
            self.error = err


def test_a_second_concurrent_run_into_the_folder_is_refused(tmp_path):
    cfg = small_config(tmp_path / "run")
    nested = NestedFit(cfg)
    fit(cfg, callbacks=[nested])
    assert nested.error is not None and f"PID {os.getpid()}" in str(nested.error)
    assert not (tmp_path / "run" / LOCK_NAME).exists(), "released on exit"
    assert len([r for r in csv.DictReader(open(tmp_path / "run" / "csv" / "metrics.csv")) if r.get("val/mIoU")]) == 1


def test_lock_is_released_on_exceptions(tmp_path):
    with pytest.raises(KeyboardInterrupt), RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
        raise KeyboardInterrupt
    assert not (tmp_path / LOCK_NAME).exists()


def test_lock_of_a_live_process_is_refused_and_a_dead_ones_taken_over(tmp_path, capsys):
    lock = tmp_path / LOCK_NAME
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": live.pid, "host": socket.gethostname()}))
        with pytest.raises(OutputExistsError, match=f"PID {live.pid}"), RunLock(tmp_path):
            pass
        config = _write_config(tmp_path / "small.yaml", small_config(tmp_path))
        assert main(["fit", "--config", str(config)]) == 2  # another `atrous fit` process holds the folder
        assert f"in use by another training run (PID {live.pid}" in capsys.readouterr().err
        assert lock.is_file(), "a live run's lock stays"
    finally:
        live.kill()
        live.wait()
    with RunLock(tmp_path):  # the holder is dead now: a stale lock
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": "another-host"}))
    with pytest.raises(OutputExistsError, match="another-host"), RunLock(tmp_path):
        pass


class Payload:
    """Unpickling this runs code: it would create the file ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoints(finished: Path, tmp_path: Path) -> dict[str, Path]:
    last = finished / "checkpoints" / "last.ckpt"
    files = {name: tmp_path / f"{name}.ckpt" for name in ("truncated", "random_bytes", "torch_file", "weights_only",
                                                           "malicious", "missing")}
    files["truncated"].write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    files["random_bytes"].write_bytes(os.urandom(4096))
    torch.save({"a": torch.zeros(3)}, files["torch_file"])
    torch.save({"state_dict": torch.load(last, weights_only=True)["state_dict"]}, files["weights_only"])
    with open(files["malicious"], "wb") as file:
        pickle.dump({"state_dict": Payload(tmp_path / "pwned")}, file)
    return files


def test_bad_resume_files_are_one_clear_line_and_never_run_code(finished, tmp_path, capsys):
    files = _bad_checkpoints(finished, tmp_path)
    other = tiny_config(tmp_path / "other", max_epochs=1)  # DenseASPP, not FCN
    config = _write_config(tmp_path / "small.yaml", small_config(tmp_path / "new"))
    expected = {"truncated": "cannot be read", "random_bytes": "cannot be read", "torch_file": "not an atrous training",
                "weights_only": "not an atrous training", "malicious": "cannot be read", "missing": "no checkpoint"}
    for name, path in files.items():
        assert main(["fit", "--config", str(config), "--resume", str(path)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith("atrous: error:") and "\n" not in err and expected[name] in err, (name, err)
    assert not (tmp_path / "pwned").exists(), "the pickled code never ran"
    assert not (tmp_path / "new").exists(), "a refused resume writes nothing"
    foreign = _write_config(tmp_path / "other.yaml", other)
    assert main(["fit", "--config", str(foreign), "--resume", str(finished / "checkpoints" / "last.ckpt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "different model" in err and "\n" not in err


def test_resuming_with_another_learning_rate_is_refused(finished, tmp_path, capsys):
    """Lightning restores the optimizer's learning rate from the checkpoint: a changed
    train.optimizer.lr would be ignored while the new checkpoints stored it."""
    last = finished / "checkpoints" / "last.ckpt"
    stored = torch.load(last, weights_only=True)["hyper_parameters"]["config"]
    lr = stored["train"]["optimizer"]["lr"]
    changed = {**stored, "train": {**stored["train"], "output_dir": str(tmp_path / "new"),
                                   "optimizer": {**stored["train"]["optimizer"], "lr": lr * 10}}}
    config = _write_config(tmp_path / "changed.yaml", changed)
    assert main(["fit", "--config", str(config), "--resume", str(last)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atrous: error:") and "\n" not in err, err
    assert f"train.optimizer.lr {lr!r} -> {lr * 10!r}" in err and "train.init_checkpoint" in err
    assert not (tmp_path / "new").exists(), "a refused resume writes nothing"


@pytest.mark.parametrize("failure", [
    OSError(errno.ENOSPC, "No space left on device"),
    RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4436800 vs 4436688"),
])
def test_a_full_disk_while_writing_a_checkpoint_says_so(tmp_path, monkeypatch, failure):
    def full(obj, file, *args, **kwargs):
        file.write(b"partial")
        raise failure

    monkeypatch.setattr("atrous.training.callbacks.torch.save", full)
    target = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(DiskFullError, match=f"disk holding {tmp_path / 'checkpoints'} is full") as caught:
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, target)
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.rglob("*.ckpt*")) == [], "no partial file is left"


def test_a_full_disk_advises_resume_only_when_there_is_a_last_checkpoint(tmp_path, monkeypatch):
    def full(obj, file, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("atrous.training.callbacks.torch.save", full)
    folder = tmp_path / "checkpoints"
    with pytest.raises(DiskFullError) as first:
        AtomicCheckpointIO().save_checkpoint({"epoch": 0}, folder / "last.ckpt")
    assert "--resume" not in str(first.value) and "starts afresh" in str(first.value)
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"an earlier checkpoint")
    with pytest.raises(DiskFullError) as later:
        AtomicCheckpointIO().save_checkpoint({"epoch": 1}, folder / "best.ckpt")
    assert f"--resume to continue from {folder / 'last.ckpt'}" in str(later.value)


def test_other_checkpoint_write_errors_keep_their_traceback(tmp_path, monkeypatch):
    def broken(obj, path, *args, **kwargs):
        raise RuntimeError("an atrous bug")

    monkeypatch.setattr("atrous.training.callbacks.torch.save", broken)
    with pytest.raises(RuntimeError, match="an atrous bug"):
        AtomicCheckpointIO().save_checkpoint({}, tmp_path / "last.ckpt")


def test_fit_on_a_full_disk_is_one_line_naming_the_folder(tmp_path, monkeypatch, capsys):
    def full(obj, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("atrous.training.callbacks.torch.save", full)
    config = _write_config(tmp_path / "small.yaml", small_config(tmp_path / "run"))
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err  # Lightning's own warnings come first
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("atrous: error:") and f"{tmp_path / 'run' / 'checkpoints'} is full" in line
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_csv_writer_continues_a_log_and_truncation_cuts_back_to_the_checkpoint(tmp_path):
    """Pins what the resumed CSV log relies on (the writer replaces Lightning's, which deletes
    an existing metrics.csv)."""
    first = AppendingCSVWriter(str(tmp_path))
    first.log_metrics({"loss": torch.tensor(1.5)}, step=0)
    first.log_metrics({"loss": 1.0}, step=1)
    first.save()
    second = AppendingCSVWriter(str(tmp_path))  # a resumed session
    second.log_metrics({"loss": 0.5, "val/mIoU": 0.25}, step=2)  # a new column: the header widens
    second.save()
    second.log_metrics({"loss": 0.25}, step=3)
    second.save()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [(r["step"], r["loss"], r["val/mIoU"]) for r in rows] == [
        ("0", "1.5", ""), ("1", "1.0", ""), ("2", "0.5", "0.25"), ("3", "0.25", "")]
    assert truncate_metrics(tmp_path / "metrics.csv", global_step=2) == 2
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["step"] for r in rows] == ["0", "1"] and "val/mIoU" in rows[0]
    assert truncate_metrics(tmp_path / "absent.csv", global_step=2) == 0


def test_resumable_logger_is_a_public_lightning_logger_that_continues_its_folder(tmp_path):
    """The logger uses Lightning's public ``Logger`` contract only: a second session in the same
    folder continues metrics.csv; hparams.yaml, the flush interval and finalize behave as in
    Lightning's CSVLogger."""
    first = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="", flush_logs_every_n_steps=2)
    assert isinstance(first, Logger) and not isinstance(first, CSVLogger)
    assert first.log_dir == str(tmp_path / "csv") and (first.name, first.version) == ("csv", "")
    first.log_hyperparams({"lr": 0.5})
    first.log_metrics({"loss": torch.tensor(1.5)}, step=0)
    assert not (tmp_path / "csv" / "metrics.csv").exists()  # buffered until the flush interval
    first.log_metrics({"loss": 1.0}, step=1)  # (step + 1) % 2 == 0: written
    assert len(list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))) == 2
    first.finalize("success")
    second = ResumableCSVLogger(save_dir=str(tmp_path), name="csv", version="")  # a resumed session
    second.log_metrics({"loss": 0.5, "val/mIoU": 0.25}, step=2)
    second.finalize("success")
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert [(r["step"], r["loss"], r["val/mIoU"]) for r in rows] == [("0", "1.5", ""), ("1", "1.0", ""), ("2", "0.5", "0.25")]
    assert yaml.safe_load(open(tmp_path / "csv" / "hparams.yaml")) == {"lr": 0.5}
    ResumableCSVLogger(save_dir=str(tmp_path / "never"), name="csv").finalize("success")
    assert not (tmp_path / "never").exists()  # a process that never logged writes nothing
