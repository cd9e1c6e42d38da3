"""atrous on a CUDA GPU: every command, every precision and layout, and the CPU's answers.

Marked ``cuda`` and skipped without a GPU (CPU CI skips them; ``scripts/gpu_check.sh`` runs them
on a GPU machine). Tolerances, stated once:

* float64 on CUDA against float64 on the CPU: the same arithmetic up to summation order, so
  logits agree to 1e-9 (relative to their scale);
* float32 with TF32 off: 1e-4 relative (cuDNN picks other algorithms than oneDNN);
* float32 with cuDNN's default TF32 convolutions (10-bit mantissa products): 1e-2 relative;
* bf16 autocast 3e-2 and fp16 autocast 1e-2 relative against float32;
* a run resumed on CUDA against an uninterrupted one: 1e-5 absolute on every weight (CUDA's
  atomic additions in backward make the summation order vary between runs by ~1e-7).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from atrous.cli import main
from atrous.engines import EngineOptions, build_engine
from atrous.engines.export import export_checkpoint
from atrous.errors import InputError
from atrous.models import build_model
from atrous.training.runner import fit

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (scripts/gpu_check.sh runs these on a GPU machine)"),
]

MODEL = {
    "num_classes": 19,
    "backbone": {"name": "resnet18", "output_stride": 8},
    "head": {"name": "denseaspp", "atrous_rates": [3, 6, 12], "bottleneck_channels": 32, "growth_channels": 16},
    "aux_head": {"feature": "layer3", "channels": 16},
}


def tiny_config(out: Path, **train) -> dict:
    return {
        "model": MODEL,
        "data": {
            "dataset": {"name": "synthetic", "image_size": [64, 128]},
            "train": {"split": "train", "length": 8, "transforms": {"scale_range": [0.75, 1.25], "crop_size": [64, 96], "hflip": True}},
            "val": {"split": "val", "length": 4},
            "batch_size": 4,
            "num_workers": 0,
        },
        "train": {
            "max_epochs": 2,
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            "output_dir": str(out),
            "progress_bar": False,
            "log_every_n_steps": 1,
            "accelerator": "gpu",
            **train,
        },
    }


@contextlib.contextmanager
def tf32(allowed: bool):
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    return float((a - b).abs().max() / b.abs().max())


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(MODEL, pretrained_backbone=False).eval()
    # A few BatchNorm statistics away from the identity, so the comparison covers them.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 72, 136, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny DenseASPP trained for 2 epochs (4 steps) on the GPU."""
    run = tmp_path_factory.mktemp("cuda") / "run"
    metrics = fit(tiny_config(run))
    assert np.isfinite(metrics["mIoU"])
    return run


# -- the commands on CUDA ------------------------------------------------------------------------
def test_fit_on_cuda_writes_checkpoints_and_metrics(trained):
    assert (trained / "checkpoints" / "best.ckpt").is_file() and (trained / "checkpoints" / "last.ckpt").is_file()
    state = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    assert json.loads((trained / "metrics.json").read_text())["split"] == "val"


def test_validate_on_cuda_with_strategies(trained, tmp_path):
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    assert main(["validate", "--checkpoint", ckpt, "--output", str(tmp_path / "plain")]) == 0
    assert main(["validate", "--checkpoint", ckpt, "--output", str(tmp_path / "tta"), "--tta", "deeplabv3"]) == 0
    plain = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    tta = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    assert plain["num_pixels"] == tta["num_pixels"] == 4 * 64 * 128
    assert 0.0 <= tta["mIoU"] <= 1.0


def test_predict_on_cuda_equals_predict_on_cpu(trained, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (70, 150, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    ckpt = str(trained / "checkpoints" / "best.ckpt")
    with tf32(False):
        assert main(["predict", str(photos), "--checkpoint", ckpt, "--output", str(tmp_path / "gpu"), "--device", "cuda", "--no-progress"]) == 0
    assert main(["predict", str(photos), "--checkpoint", ckpt, "--output", str(tmp_path / "cpu"), "--device", "cpu", "--no-progress"]) == 0
    for i in range(2):
        gpu = np.array(Image.open(next((tmp_path / "gpu").rglob(f"p{i}_labels.png"))))
        cpu = np.array(Image.open(next((tmp_path / "cpu").rglob(f"p{i}_labels.png"))))
        assert gpu.shape == cpu.shape == (70, 150)
        assert (gpu == cpu).mean() >= 0.999


def test_export_and_benchmark_on_cuda(trained, tmp_path):
    ckpt = trained / "checkpoints" / "best.ckpt"
    onnx, _ = export_checkpoint(ckpt, tmp_path / "model.onnx", "onnx", image_size=(64, 128))
    assert onnx.max_abs_diff is not None and onnx.max_abs_diff < 1e-3, "onnxruntime reproduces the model on another size"
    try:
        program, _ = export_checkpoint(ckpt, tmp_path / "model.pt2", "exported-program", image_size=(64, 128))
        assert program.max_abs_diff < 1e-3
    except InputError as err:  # a torch that specialises dynamic shapes: refused, nothing written
        assert "--static" in str(err) and not (tmp_path / "model.pt2").exists()
    report = tmp_path / "bench.json"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"model": MODEL}))
    assert main(["benchmark", "--config", str(config), "--device", "cuda", "--image-size", "64", "128", "--repeats", "2",
                 "--warmup", "1", "--precision", "bf16", "--channels-last", "--output", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["machine"]["device"].startswith("cuda")
    assert result["models"][0]["train"]["peak_memory_mb"] > 0


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_training_on_cuda(tmp_path, precision):
    metrics = fit(tiny_config(tmp_path / precision, max_epochs=1, precision=precision))
    assert np.isfinite(metrics["mIoU"])
    state = torch.load(tmp_path / precision / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]
    assert all(v.dtype != torch.bfloat16 and v.dtype != torch.float16 for v in state.values()), "weights stay float32"
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# -- the numbers against the CPU's ----------------------------------------------------------------
def test_float64_on_cuda_equals_float64_on_cpu(images):
    model = tiny_model().double()
    expected = model(images.double())
    got = model.cuda()(images.double().cuda())
    assert relative_error(got, expected) <= 1e-9


@pytest.mark.parametrize(("allow_tf32", "tolerance"), [(False, 1e-4), (True, 1e-2)])
def test_float32_on_cuda_matches_the_cpu(images, allow_tf32, tolerance):
    model = tiny_model()
    with torch.no_grad():
        expected = model(images)
        with tf32(allow_tf32):
            got = model.cuda()(images.cuda())
    assert relative_error(got, expected) <= tolerance


@pytest.mark.parametrize(("precision", "tolerance"), [("bf16", 3e-2), ("fp16", 1e-2)])
def test_autocast_engine_on_cuda(images, precision, tolerance):
    model = tiny_model()
    with torch.no_grad(), tf32(False):
        reference = build_engine(model, EngineOptions(), "cuda", log=False)(images.cuda())
        engine = build_engine(model, EngineOptions(precision=precision), "cuda", log=False)
        got = engine(images.cuda())
    assert got.dtype == torch.float32 and torch.isfinite(got).all()
    assert relative_error(got, reference) <= tolerance


def test_channels_last_and_compile_on_cuda(images):
    model = tiny_model()
    with torch.no_grad(), tf32(False):
        reference = build_engine(model, EngineOptions(memory_format="contiguous"), "cuda", log=False)(images.cuda())
        channels_last = build_engine(model, EngineOptions(memory_format="channels_last"), "cuda", log=False)(images.cuda())
        compiled = build_engine(model, EngineOptions(compile=True), "cuda", log=False)(images.cuda())
    assert relative_error(channels_last, reference) <= 1e-4
    assert relative_error(compiled, reference) <= 1e-4


# -- training state on CUDA --------------------------------------------------------------------
class Crash(L.Callback):
    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise SystemExit("simulated crash")


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")["state_dict"]


def test_resumed_run_on_cuda_ends_where_an_uninterrupted_one_does(tmp_path):
    """With ``train.deterministic`` (on CUDA Lightning's warn mode: see
    :func:`atrous.training.runner.lightning_deterministic`)."""
    deterministic = True
    fit(tiny_config(tmp_path / "full", deterministic=deterministic))
    crashed = tiny_config(tmp_path / "crashed", deterministic=deterministic)
    with pytest.raises(SystemExit):
        fit(crashed, callbacks=[Crash(at_step=3)])
    fit(crashed, resume=True)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "crashed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(b[key].double(), a[key].double(), rtol=0, atol=1e-5), key
    # The tolerance separates: one step less moves the weights far beyond it.
    fit(tiny_config(tmp_path / "short", max_epochs=None, max_steps=3, deterministic=deterministic))
    short = _weights(tmp_path / "short")
    assert max(float((short[k].double() - a[k].double()).abs().max()) for k in a if a[k].is_floating_point()) > 1e-3


def test_syncbatchnorm_under_ddp_with_one_process(tmp_path):
    """``train.sync_batchnorm`` with the DDP strategy on one GPU: BatchNorm layers become
    SyncBatchNorm for training and the run completes (in a process of its own: DDP sets up a
    process group that would outlive the test)."""
    config = tiny_config(tmp_path / "run", max_epochs=1, strategy="ddp", devices=1, sync_batchnorm=True)
    script = textwrap.dedent(f"""
        import json, sys, torch, lightning as L
        from atrous.training.runner import fit

        class Record(L.Callback):
            def on_train_start(self, trainer, pl_module):
                kinds = {{type(m).__name__ for m in pl_module.modules() if "BatchNorm" in type(m).__name__}}
                print("BN", sorted(kinds))

        metrics = fit(json.loads({json.dumps(json.dumps(config))}), callbacks=[Record()])
        print("MIOU", metrics["mIoU"])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "BN ['SyncBatchNorm']" in done.stdout, done.stdout[-2000:]
    assert "MIOU" in done.stdout
