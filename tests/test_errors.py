"""User errors read as one line and exit 2; bugs keep their traceback and exit 1.

Every command-line mistake of the audit runs through ``atrous.cli.main`` here:
unknown sections in overrides, values of the wrong type or range, devices that do not exist,
export sizes the model cannot take, output folders that cannot be created, a full disk, a
dataset error inside a DataLoader worker.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from fixtures_user_data import write_folder
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from atrous.cli import INTERNAL_ERROR_LINE, check_config, main, report_error
from atrous.cli.boundary import validate_config
from atrous.config import ConfigError, list_configs, load_config
from atrous.data.base import DatasetError
from atrous.devices import resolve_device
from atrous.errors import DeviceError, UserError, worker_error_message
from atrous.models import build_model
from atrous.training.train_section import TrainConfig

DEMO = "demo/denseaspp_resnet18_small"
TINY_MODEL = {"num_classes": 4, "backbone": {"name": "resnet18", "output_stride": 8, "pretrained": False},
              "head": {"name": "fcn"}}


def assert_one_error_line(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """stderr is exactly one line, ``atrous: error: …``, holding every needle; returns it."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("atrous: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny model saved the way `atrous fit` saves it (state dict + config)."""
    root = tmp_path_factory.mktemp("errors")
    cfg = {"model": TINY_MODEL, "train": {"output_dir": str(root / "run")}}
    model = build_model(cfg)
    path = root / "tiny.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": cfg, "class_names": ["a", "b", "c", "d"], "ignore_index": 255}}, path)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "image.png")
    return path


def _read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


ROOT_IGNORES_PERMISSIONS = hasattr(os, "geteuid") and os.geteuid() == 0

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
PERMISSIONS = pytest.mark.skipif(ROOT_IGNORES_PERMISSIONS, reason="root may write in any folder")
PREDICT = ["predict", "{tmp}/x.png", "--checkpoint", "{ckpt}", "--output", "{tmp}/out"]
EXPORT = ["export", "--checkpoint", "{ckpt}", "--output", "{tmp}/m.pt2", "--format", "exported-program"]

# arguments ({tmp}, {ckpt} filled in), then the words the one error line must hold
CLI_MISTAKES = [
    pytest.param(["fit", "--config", DEMO, "trian.max_epochs=0"], ["'trian'", "did you mean 'train'"],
                 id="override-unknown-section"),
    pytest.param(["fit", "--config", DEMO, "train.max_epochs=two"], ["train.max_epochs", "'two'", "integer"],
                 id="max-epochs-not-a-number"),
    pytest.param(["fit", "--config", DEMO, "train.max_epochs=-1", "train.max_steps=-1"],
                 ["max_epochs", "max_steps", "never end"], id="training-never-ends"),
    pytest.param(["fit", "--config", DEMO, "train.lr_schedule.foo=1"], ["train.lr_schedule", "'foo'", "power"],
                 id="unknown-schedule-key"),
    pytest.param(["fit", "--config", DEMO, "--set", "model=3"], ["model", "mapping", "3"], id="model-not-a-mapping"),
    pytest.param(["fit", "--config", DEMO, "train.optimizer.lr=fast"], ["train.optimizer.lr", "'fast'", "number"],
                 id="lr-not-a-number"),
    pytest.param(["fit", "--config", DEMO, "train.max_epoch=3"], ["'max_epoch'", "did you mean 'max_epochs'"],
                 id="misspelt-train-key"),
    pytest.param(["fit", "--config", DEMO, "data.batch_size=-2"], ["data.batch_size", "-2", ">= 1"],
                 id="negative-batch-size"),
    pytest.param(["info", "--config", DEMO, "train.seed=-1"], ["train.seed", ">= 0"], id="info-checks-train-too"),
    pytest.param(["info", "--config", DEMO, "model.head.atrous_rates=three"],
                 ["model.head.atrous_rates", "'three'", "list of integers"], id="head-argument-type"),
    pytest.param(["fit", "--config", DEMO, "data.train.length=two"], ["data.train.length", "'two'"],
                 id="dataset-argument-type"),
    pytest.param(["fit", "--config", DEMO, "train.devices=banana"], ["train.devices", "'banana'"], id="train-devices"),
    pytest.param(["fit", "--config", DEMO, "train.precision=17-mixed"], ["train.precision", "'17-mixed'", "bf16-mixed"],
                 id="train-precision"),
    pytest.param(["fit", "--config", DEMO, "train.strategy=dpp"], ["train.strategy", "did you mean 'ddp'"],
                 id="train-strategy"),
    pytest.param(["fit", "--config", DEMO, "train.accelerator=cpu", "train.devices=[0, 1]"],
                 ["train.devices", "accelerator cpu", "[0, 1]"], id="train-devices-on-cpu"),
    pytest.param(["fit", "--config", DEMO, "train.loggers=[{{name: csv, flush_every: 3}}]"],
                 ["train.loggers: csv", "'flush_every'", "flush_logs_every_n_steps"], id="logger-option"),
    pytest.param(["info", "--config", DEMO, "model.head.atrous_rates=[0, 6]"],
                 ["model.head.atrous_rates", "positive", "[0, 6]"], id="head-rates-range"),
    pytest.param(["info", "--config", "deeplabv3plus/aspp_resnet101_os16", "model.head.context={{name: aspp, rates: [1]}}"],
                 ["model.head.context (aspp)", "'rates'", "atrous_rates"], id="inner-head-option"),
    pytest.param(["fit", "--config", DEMO, "train.output_dir={tmp}/a_file/run"], ["a_file", "not a folder"],
                 id="output-dir-under-a-file"),
    pytest.param(["fit", "--config", DEMO, "train.output_dir={tmp}/read_only/run"], ["read_only", "permission"],
                 id="output-dir-read-only", marks=PERMISSIONS),
    pytest.param([*PREDICT, "--device", "banana"], ["--device 'banana'", "cpu"], id="predict-device-banana"),
    pytest.param([*PREDICT, "--device", "cuda"], ["--device cuda", "--device cpu"], id="predict-device-cuda",
                 marks=NO_CUDA),
    pytest.param(["benchmark", "--config", DEMO, "--device", "banana"], ["--device 'banana'"], id="benchmark-device-banana"),
    pytest.param(["benchmark", "--config", DEMO, "--device", "cuda"], ["CUDA is not available"],
                 id="benchmark-device-cuda", marks=NO_CUDA),
    pytest.param([*EXPORT, "--image-size", "0", "0"], ["--image-size 0 0", "positive"], id="export-image-size-zero"),
    pytest.param([*EXPORT, "--image-size", "4", "4"], ["output stride is 8", "16x16"], id="export-image-size-4"),
    pytest.param([*EXPORT, "--image-size", "100000", "100000"], ["--image-size 100000x100000", "pixels"],
                 id="export-image-size-100000"),
    pytest.param(["fit", "--config", DEMO, "data.dataset.image_size=[100000, 100000]"], ["image_size", "pixels"],
                 id="synthetic-image-size-100000"),
    pytest.param(["export", "--checkpoint", "{ckpt}", "--output", "{tmp}/m.onnx", "--format", "onnx", "--opset", "999"],
                 ["--opset 999", "knows opsets up to"], id="export-opset-999"),
    pytest.param(["quantize", "--checkpoint", "{ckpt}", "--output", "{tmp}/out", "--repeats", "0"],
                 ["--repeats", "at least 1"], id="quantize-repeats-0"),
    pytest.param(["fit", "--config", "{tmp}/latin1.yaml"], ["latin1.yaml", "not UTF-8", "save the config as UTF-8"],
                 id="config-not-utf8"),
    pytest.param(["fit", "--config", "{tmp}/deep.yaml"], ["deep.yaml", "nested too deeply"], id="config-5000-deep"),
    pytest.param(["info", "--config", DEMO, "model.x=" + "[" * 5000 + "]" * 5000], ["override model.x", "nested too deeply"],
                 id="override-5000-deep"),
    pytest.param(["fit", "--config", DEMO, "train.optimizer.lr=.inf"], ["train.optimizer.lr", "inf", "finite"],
                 id="lr-infinite"),
    pytest.param(["fit", "--config", DEMO, "train.optimizer.lr=.nan"], ["train.optimizer.lr", "nan", "finite"],
                 id="lr-nan"),
    pytest.param(["fit", "--config", DEMO, "data.val.split=../../.."], ["data.val.split '../../..'", "not a path"],
                 id="split-is-a-path"),
    pytest.param(["analyze", "confusion", "--checkpoint", "{ckpt}", "--split", "../../..", "--output", "{tmp}/out"],
                 ["split '../../..'", "not a path"], id="analyze-split-is-a-path"),
    pytest.param(["fit", "--config", DEMO, "train.output_dir=/proc/atrous-run"], ["/proc/atrous-run", "cannot create"],
                 id="output-dir-under-proc"),
    pytest.param(["predict", "{tmp}/x.png", "--checkpoint", "{ckpt}", "--output", "{tmp}/a_file"],
                 ["--output", "a_file is a file, not a folder"], id="predict-output-is-a-file"),
    pytest.param(["analyze", "valid-weights", "--checkpoint", "{ckpt}", "--output", "{tmp}/a_file"],
                 ["--output", "a_file is a file, not a folder"], id="analyze-output-is-a-file"),
    pytest.param([*PREDICT, "--engine", "onnxruntime", "--engine-cache", "{tmp}/a_file"],
                 ["--engine-cache", "a_file is a file, not a folder"], id="engine-cache-is-a-file"),
    pytest.param([*PREDICT, "--engine", "onnxruntime", "--engine-cache", "{tmp}/read_only/cache"],
                 ["--engine-cache", "read_only", "cannot create"], id="engine-cache-read-only", marks=PERMISSIONS),
]


@pytest.mark.parametrize(("arguments", "needles"), CLI_MISTAKES)
def test_cli_mistakes_are_one_line_and_exit_2(arguments, needles, checkpoint, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder")
    (tmp_path / "latin1.yaml").write_bytes("model: {num_classes: 4}  # für\n".encode("latin-1"))
    (tmp_path / "deep.yaml").write_text("model: " + "[" * 5000 + "]" * 5000 + "\n")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.png")
    if any("read_only" in a for a in arguments):
        _read_only_folder(tmp_path)
    args = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in arguments]
    started = []
    monkeypatch.setattr("atrous.training.runner.build_trainer", lambda *a, **k: started.append(a))
    assert main(args) == 2
    assert_one_error_line(capsys, *needles)
    assert not started, "the mistake must be found before training starts"
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.pt2").exists() and not (tmp_path / "m.onnx").exists()


def test_disk_full_in_predict_names_the_file(checkpoint, tmp_path, capsys, monkeypatch):
    def full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full)
    out = tmp_path / "out"
    rc = main(["predict", str(checkpoint.parent / "image.png"), "--checkpoint", str(checkpoint),
               "--output", str(out), "--device", "cpu", "--no-progress"])
    assert rc == 2
    line = assert_one_error_line(capsys, "disk is full", str(out))
    assert "free some space" in line


class _BrokenItems(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise DatasetError(f"/data/img_{index}.png: cannot decode this image; re-export or remove the file")


def test_dataset_error_in_a_dataloader_worker_keeps_its_message(capsys):
    with pytest.raises(DatasetError) as info:
        next(iter(DataLoader(_BrokenItems(), num_workers=1)))
    assert "Original Traceback" in str(info.value)  # what torch makes of it ...
    assert worker_error_message(info.value) == "/data/img_0.png: cannot decode this image; re-export or remove the file"
    assert report_error(info.value) == 2  # ... and what the user reads
    assert_one_error_line(capsys, "/data/img_0.png: cannot decode this image")


def test_worker_error_that_torch_could_not_rebuild_is_still_a_user_error(capsys):
    """torch falls back to RuntimeError when the class cannot be built from one string."""
    wrapped = RuntimeError("Caught DatasetError in DataLoader worker process 3.\nOriginal Traceback (most recent call "
                           "last):\n  File \"x.py\", line 1, in <module>\natrous.data.base.DatasetError: bad.png: broken")
    assert report_error(wrapped) == 2
    assert_one_error_line(capsys, "bad.png: broken")
    other = RuntimeError("Caught ZeroDivisionError in DataLoader worker process 0.\nOriginal Traceback ...")
    assert worker_error_message(other) is None  # a bug in a worker stays a bug


def test_fit_with_a_corrupt_image_read_by_a_worker(tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="lightning.pytorch")  # no "GPU available" notices
    root = write_folder(tmp_path / "ds", n=4, size=(32, 32))
    (root / "images" / "sample_0001.png").write_bytes(b"not a png")
    cfg = {"model": TINY_MODEL, "data": {"dataset": {"name": "folder", "root": str(root), "val_fraction": 0.5},
                                         "train": {}, "val": {},
                                         "batch_size": 2, "num_workers": 1},
           "train": {"max_epochs": 1, "output_dir": str(tmp_path / "run"), "progress_bar": False, "accelerator": "cpu"}}
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(config)]) == 2
    err = capsys.readouterr().err  # Lightning's own notices come first
    assert "Traceback" not in err and "Original" not in err
    lines = [line for line in err.splitlines() if line.startswith("atrous:")]
    assert lines == [f"atrous: error: {root}/images/sample_0001.png: cannot decode this image "
                     f"(cannot identify image file '{root}/images/sample_0001.png'); re-export or remove the file"]


# -- bugs are not user errors ----------------------------------------------------------------


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("an internal ValueError"),
                                 TypeError("unsupported operand"), AssertionError("broken invariant")])
def test_an_internal_bug_prints_its_traceback_and_exits_1(bug, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise bug

    monkeypatch.setattr("atrous.models.complexity.model_info", broken)
    assert main(["info", "--config", DEMO, "--image-size", "64", "64"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(bug).__name__}: {bug}" in err
    assert err.rstrip().splitlines()[-1] == INTERNAL_ERROR_LINE
    assert "atrous: error:" not in err


def _broken_constructor(cls: type, bug: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cls.__init__`` raises ``bug`` (its signature kept, so the config still parses)."""
    original = cls.__init__

    @functools.wraps(original)
    def broken(self, *args, **kwargs):
        raise bug

    monkeypatch.setattr(cls, "__init__", broken)


@pytest.mark.parametrize("bug", [TypeError("an internal TypeError"), ValueError("an internal ValueError")])
def test_a_bug_in_a_head_constructor_keeps_its_traceback(bug, capsys, monkeypatch):
    from atrous.models.heads import DenseASPPHead

    _broken_constructor(DenseASPPHead, bug, monkeypatch)
    with pytest.raises(type(bug)):
        build_model(load_config(DEMO))
    assert main(["info", "--config", DEMO, "--image-size", "64", "64"]) == 1  # built, not declared
    err = capsys.readouterr().err
    assert f"{type(bug).__name__}: {bug}" in err and err.rstrip().splitlines()[-1] == INTERNAL_ERROR_LINE
    assert "atrous: error:" not in err


def test_a_bug_in_the_loss_constructor_keeps_its_traceback(tmp_path, capsys, monkeypatch):
    from atrous.training.losses import SegmentationLoss

    _broken_constructor(SegmentationLoss, TypeError("an internal TypeError"), monkeypatch)
    assert main(["fit", "--config", DEMO, "data.train.length=2", "data.val.length=2", "data.num_workers=0",
                 f"train.output_dir={tmp_path / 'run'}"]) == 1
    err = capsys.readouterr().err
    assert "TypeError: an internal TypeError" in err and "atrous: error:" not in err


def test_ctrl_c_exits_130_quietly(capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("atrous.models.complexity.model_info", interrupted)
    assert main(["info", "--config", DEMO, "--image-size", "64", "64"]) == 130
    assert "Traceback" not in capsys.readouterr().err


# -- config validation ------------------------------------------------------------------------


def test_every_shipped_config_passes_validation():
    # check_config takes a packaged config as shipped as valid (atrous info starts without torch): this is why
    for path in list_configs():
        validate_config(load_config(path), f"{path}: ")


@pytest.mark.parametrize(
    ("train", "needles"),
    [
        ({"max_epochs": 0}, ["train.max_epochs", ">= 1", "0"]),
        ({"max_epochs": True}, ["train.max_epochs", "True", "integer"]),
        ({"max_steps": -5}, ["train.max_steps", "-5"]),
        ({"accumulate_grad_batches": 0}, ["train.accumulate_grad_batches", ">= 1"]),
        ({"freeze_bn": "yes"}, ["train.freeze_bn", "'yes'", "true or false"]),
        ({"gradient_clip_val": "big"}, ["train.gradient_clip_val", "a number or null"]),
        ({"limit_train_batches": 1.5}, ["train.limit_train_batches", "1.5"]),
        ({"optimizer": {"name": "adamm"}}, ["train.optimizer.name", "'adamm'", "did you mean 'adam'"]),
        ({"optimizer": {"name": "sgd", "momentun": 0.9}}, ["'momentun'", "did you mean 'momentum'"]),
        ({"optimizer": {"name": "adam", "lr": -1.0}}, ["train.optimizer.lr", "> 0"]),
        ({"optimizer": {"name": "adam", "lr": "3e-4"}}, ["train.optimizer.lr", "'3e-4'", "3.0e-4"]),
        ({"optimizer": {"name": "adam", "betas": [0.9]}}, ["train.optimizer.betas", "2 numbers"]),
        ({"optimizer": 0.01}, ["train.optimizer", "mapping"]),
        ({"lr_schedule": {"name": "step"}}, ["train.lr_schedule.name", "'step'", "poly"]),
        ({"lr_schedule": {"name": "poly", "power": 0}}, ["train.lr_schedule.power", "> 0"]),
        ({"lr_schedule": {"name": "poly", "warmup_steps": 2.5}}, ["train.lr_schedule.warmup_steps", "integer"]),
        ({"loss": {"aux_wieght": 0.4}}, ["train.loss", "did you mean 'aux_weight'"]),
        ({"loss": {"class_weights": ["a"]}}, ["train.loss.class_weights", "numbers"]),
    ],
)
def test_train_section_errors_name_key_value_and_expectation(train, needles):
    with pytest.raises(ConfigError) as info:
        TrainConfig.from_mapping(train)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_valid_train_values_pass():
    cfg = TrainConfig.from_mapping({"max_epochs": None, "max_steps": 30, "limit_train_batches": 3, "devices": "auto",
                                    "gradient_clip_val": 1, "optimizer": {"name": "SGD", "lr": 1, "momentum": 0.9,
                                                                          "nesterov": True}})
    assert cfg.max_steps == 30 and cfg.optimizer["lr"] == 1


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        (["data.num_worker=2"], ["data:", "'num_worker'", "did you mean 'num_workers'"]),
        (["data.batch_size=two"], ["data.batch_size", "'two'", "integer"]),
        (["data.train.transforms.crop=[8, 8]"], ["data.train.transforms", "did you mean 'crop_size'"]),
        (["data.dataset.name=cityscape"], ["'cityscape'", "did you mean 'cityscapes'"]),
        (["data.val.bootstrap.classes=[car]"], ["data.val.bootstrap", "data.train only"]),
        (["model.num_classes=0"], ["model.num_classes", "from 1 to 65535"]),
        (["model.num_classes=100000000"], ["model.num_classes", "from 1 to 65535", "100000000"]),
        (["data.train.transforms={crop_size: [100000, 100000]}"], ["crop_size 100000x100000", "pixels"]),
        (["model.backbone.outputstride=8"], ["'outputstride'", "did you mean 'output_stride'"]),
        (["evaluate=3"], ["evaluate", "mapping"]),
        (["base=denseaspp_report/table1_model4"], ["'base'", "unknown section"]),
    ],
)
def test_whole_config_errors_after_overrides(overrides, needles):
    with pytest.raises(ConfigError) as info:
        check_config(load_config(DEMO, overrides))
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_config_py_does_not_import_training():
    """The bottom layer checks what it owns; the sections' owners are above it."""
    source = (Path(__file__).resolve().parents[1] / "src" / "atrous" / "config.py").read_text()
    assert "training" not in "".join(line for line in source.splitlines() if line.startswith(("from", "import")))


# -- devices -----------------------------------------------------------------------------------


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for name in ("banana", "mps", "cuda:99"):
        if name == "cuda:99" and not torch.cuda.is_available():
            continue
        with pytest.raises(DeviceError):
            resolve_device(name)
    assert issubclass(DeviceError, UserError)


def _atrous_process(*args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    import sys

    return subprocess.Popen([sys.executable, "-m", "atrous.cli", *args], env={**os.environ, **(env or {})},
                            stderr=subprocess.PIPE, text=True, **popen)


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """``atrous zoo | head -1``: the pipe's reader is gone before the table is written."""
    process = _atrous_process("zoo", stdout=subprocess.PIPE)
    process.stdout.close()
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 141 and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr


def test_output_the_terminal_cannot_encode_is_escaped():
    process = _atrous_process("zoo", env={"PYTHONIOENCODING": "ascii"}, stdout=subprocess.PIPE)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "| config |" in stdout


def test_data_workers_are_bounded_by_the_usable_cpus(capsys):
    from atrous.data.build import usable_cpus
    from atrous.training.datamodule import SegmentationDataModule

    data = SegmentationDataModule({"dataset": {"name": "synthetic", "image_size": [32, 64]},
                                   "train": {"length": 2}, "val": {"length": 2}, "num_workers": 100000})
    assert data.num_workers == usable_cpus()
    assert "data.num_workers=100000" in capsys.readouterr().err
    assert main(["check-data", "--config", "demo/denseaspp_resnet18_small", "--set", "data.train.length=1",
                 "data.val.length=1", "--split", "val", "--num-workers", "100000", "--no-progress"]) == 0
    assert f"--num-workers=100000 is more than this machine's {usable_cpus()} usable CPU(s)" in capsys.readouterr().err


def test_ctrl_c_during_fit_is_a_keyboard_interrupt(tmp_path):
    """Lightning turns Ctrl-C into ``sys.exit(1)``; atrous makes it a KeyboardInterrupt again, so
    ``atrous fit`` exits with 130 like every other command."""
    import lightning as L

    from atrous.training.runner import fit

    class CtrlC(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            raise KeyboardInterrupt

    config = {
        "model": {"num_classes": 19, "backbone": {"name": "resnet18", "output_stride": 32},
                  "head": {"name": "fcn"}},
        "data": {"dataset": {"name": "synthetic", "image_size": [32, 64]}, "train": {"split": "train", "length": 2},
                 "val": {"split": "val", "length": 2}, "batch_size": 2, "num_workers": 0},
        "train": {"max_epochs": 1, "output_dir": str(tmp_path / "run"), "progress_bar": False, "accelerator": "cpu"},
    }
    with pytest.raises(KeyboardInterrupt):
        fit(config, callbacks=[CtrlC()])
    assert not (tmp_path / "run" / ".atrous-fit.lock").exists(), "the run lock is released"


def _under_file_size_limit(limit: int):  # noqa: ANN202 - a preexec_fn
    """A child process whose files may not grow beyond ``limit`` bytes: writes fail with EFBIG
    (SIGXFSZ ignored), as they fail with ENOSPC on a full disk."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize(("fmt", "name"), [("torchscript", "m.pt"), ("exported-program", "m.pt2"), ("onnx", "m.onnx")])
def test_export_that_cannot_write_its_file_is_one_line_and_leaves_nothing(fmt, name, checkpoint, tmp_path):
    """torch's zip writer (torch.jit.save, torch.export.save) aborts the process with a C++ trace
    when a write fails; atrous serialises into memory and writes the bytes itself."""
    import sys

    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "atrous.cli", "export", "--checkpoint", str(checkpoint), "--format", fmt,
         "--output", str(out / name), "--image-size", "32", "32"],
        preexec_fn=_under_file_size_limit(1 << 16), capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atrous: error: "), done.stderr[-2000:]
    assert str(out / name) in lines[0] and "ulimit -f" in lines[0]
    assert list(out.iterdir()) == [], "no partial file is left"


@pytest.mark.parametrize("failure", [
    MemoryError("Unable to allocate 27.9 GiB for an array with shape (100000, 100000, 3) and data type uint8"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 240000000000 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_running_out_of_memory_is_one_line(failure, capsys, monkeypatch):
    def exhausted(*args, **kwargs):
        raise failure

    monkeypatch.setattr("atrous.models.complexity.model_info", exhausted)
    assert main(["info", "--config", DEMO, "--image-size", "64", "64"]) == 2
    assert_one_error_line(capsys, "out of memory", "GiB", "smaller")


@pytest.mark.parametrize("command", ["predict", "validate", "export"])
def test_weights_that_are_not_finite_are_refused_at_load_naming_the_tensor(command, checkpoint, tmp_path, capsys):
    """A model with NaN weights predicts one class everywhere: refused before it runs."""
    ckpt = torch.load(checkpoint, weights_only=True)
    name = next(k for k in ckpt["state_dict"] if k.endswith("classifier.weight") or "head" in k)
    ckpt["state_dict"][name].view(-1)[0] = float("inf")
    broken = tmp_path / "diverged.ckpt"
    torch.save(ckpt, broken)
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "x.png")
    args = {"predict": ["predict", str(tmp_path / "x.png"), "--output", str(tmp_path / "out")],
            "validate": ["validate", "--output", str(tmp_path / "out")],
            "export": ["export", "--format", "onnx", "--output", str(tmp_path / "m.onnx")]}[command]
    assert main([*args, "--checkpoint", str(broken)]) == 2
    assert_one_error_line(capsys, str(broken), name, "not finite")
    assert not (tmp_path / "out").exists() and not (tmp_path / "m.onnx").exists()
