"""Export: ONNX in onnxruntime, TorchScript and ExportedProgram reproduce the PyTorch model for
other batch sizes and image sizes than the traced one, load without atrous, and the CLI."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_models import randomized_batchnorm

from atrous.cli import main
from atrous.config import CONFIG_ROOT, load_config
from atrous.engines.export import export_model, run_artifact
from atrous.errors import InputError
from atrous.models import build_model

REPO = Path(__file__).resolve().parents[1]
DEMO = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"  # ResNet-18 + DenseASPP
ASPP = CONFIG_ROOT / "experiments" / "synthetic_context" / "aspp.yaml"  # + ASPP with image pooling
TRACE_SIZE = (64, 128)
# (batch, H, W) that differ from the traced (2, 64, 128): other batch sizes, odd sizes.
CHECKS = [(1, 64, 128), (3, 40, 88), (1, 37, 71), (3, 64, 128)]


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(config: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(load_config(config))
    randomized_batchnorm(model, seed=1)
    return model.eval()


def _save_checkpoint(model: torch.nn.Module, config: Path, path: Path) -> Path:
    """A checkpoint as ``atrous fit`` writes it (Lightning layout, config in hyper_parameters)."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "hyper_parameters": {"config": load_config(config)}}, path)
    return path


@pytest.mark.parametrize("config", [DEMO, ASPP], ids=["denseaspp", "aspp-image-pooling"])
def test_onnx_matches_pytorch_for_other_batch_and_image_sizes(config, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = _model(config)
    result = export_model(model, tmp_path / "model.onnx", "onnx", image_size=TRACE_SIZE, verify=False)
    assert result.dynamic and result.opset >= 18
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    g = torch.Generator().manual_seed(2)
    for batch, h, w in CHECKS:
        x = torch.randn(batch, 3, h, w, generator=g)
        with torch.no_grad():
            expected = model(x).numpy()
        (actual,) = session.run(None, {"image": x.numpy()})
        assert actual.shape == (batch, 19, h, w)
        # float32 by design (what is deployed). onnxruntime's kernels (MLAS) sum in another order
        # than PyTorch's: measured ≤ 8e-6 at logits up to ~5 (1.6e-6 of the scale); 1e-4 leaves
        # >10x for other CPUs' SIMD widths, while an export error (a fixed shape, a dropped BN) errs by O(1).
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("fmt", ["torchscript", "exported-program"])
def test_torchscript_and_exported_program_round_trip(fmt, tmp_path):
    model = _model(ASPP)
    path = tmp_path / ("model.pt" if fmt == "torchscript" else "model.pt2")
    result = export_model(model, path, fmt, image_size=TRACE_SIZE)
    assert result.max_abs_diff is not None and result.max_abs_diff < 1e-5  # the same kernels replayed, see below
    g = torch.Generator().manual_seed(3)
    for batch, h, w in CHECKS[:2]:
        x = torch.randn(batch, 3, h, w, generator=g)
        with torch.no_grad():
            expected = model(x)
        # float32 by design: TorchScript and the ExportedProgram replay PyTorch's own kernels on the
        # same shapes, so any CPU picks the same SIMD code for both (differences ~0); 1e-5 absorbs
        # a decomposition rounding differently, an export error errs by O(1)
        torch.testing.assert_close(run_artifact(path, fmt, x), expected, atol=1e-5, rtol=0)


def test_the_self_check_fails_on_a_model_whose_output_is_not_finite(tmp_path):
    """``max |diff| = nan`` is no pass: the export fails and the file is removed."""
    model = _model(ASPP)
    with torch.no_grad():
        next(model.head.parameters()).view(-1)[0] = float("nan")
    path = tmp_path / "model.pt"
    with pytest.raises(InputError, match="not finite"):
        export_model(model, path, "torchscript", image_size=TRACE_SIZE)
    assert not path.exists()


def test_a_program_specialised_to_the_example_shape_is_refused_before_it_is_written(tmp_path, monkeypatch):
    """PyTorch 2.11 exports atrous' segmentors with a guard on the parity of the half-resolution
    map although H and W are declared dynamic (seen on a GPU machine): such a program is refused
    with the fix, and no file is left."""
    model = _model(DEMO)
    real_export = torch.export.export

    class Specialised:
        def __init__(self, program):
            self.program = program

        def module(self):
            def run(x):
                if x.shape[-2:] != TRACE_SIZE:
                    raise AssertionError("Guard failed: (-1 + x.size()[2]) // 2 % 2 != 0")
                return self.program.module()(x)
            return run

    monkeypatch.setattr(torch.export, "export", lambda *a, **k: Specialised(real_export(*a, **k)))
    with pytest.raises(InputError, match=r"only accepts images shaped like the example.*--static.*--format onnx"):
        export_model(model, tmp_path / "model.pt2", "exported-program", image_size=TRACE_SIZE)
    assert not list(tmp_path.iterdir()), "nothing written"


def test_artifacts_load_and_run_without_atrous(tmp_path):
    """A fresh interpreter in which ``import atrous`` fails loads and runs both torch formats."""
    model = _model(DEMO)
    export_model(model, tmp_path / "model.pt", "torchscript", image_size=TRACE_SIZE, verify=False)
    export_model(model, tmp_path / "model.pt2", "exported-program", image_size=TRACE_SIZE, verify=False)
    x = torch.randn(3, 3, 40, 88)
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["atrous"] = None  # any import of atrous now raises ImportError
        import torch
        warnings.simplefilter("ignore")
        io = torch.load(sys.argv[1] + "/io.pt")
        with torch.no_grad():
            ys = [torch.jit.load(sys.argv[1] + "/model.pt")(io["x"]),
                  torch.export.load(sys.argv[1] + "/model.pt2").module()(io["x"])]
        print(max(float((y - io["y"]).abs().max()) for y in ys))
        """
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-5


def test_export_cli_writes_verified_file_and_never_overwrites_the_checkpoint(tmp_path, capsys):
    ckpt = _save_checkpoint(_model(ASPP), ASPP, tmp_path / "best.ckpt")
    before = ckpt.read_bytes()
    out = tmp_path / "deploy" / "model.pt2"
    args = ["export", "--checkpoint", str(ckpt), "--format", "exported-program", "--image-size", "64", "128"]
    assert main([*args, "--output", str(out), "--fold-bn"]) == 0
    printed = capsys.readouterr().out
    assert "folded 26 of 26 BatchNorm layers" in printed and "max |exported - PyTorch|" in printed
    program = torch.export.load(str(out)).module()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in program.modules())
    assert not [p for p in out.parent.iterdir() if p != out], "atomic write leaves no temporary file"

    assert main([*args, "--output", str(ckpt)]) == 2
    assert "is the checkpoint itself" in capsys.readouterr().err
    assert ckpt.read_bytes() == before


def test_export_option_errors(tmp_path, capsys):
    model = _model(ASPP)
    with pytest.raises(ValueError, match="opset 18 or later"):
        export_model(model, tmp_path / "m.onnx", "onnx", opset=13)
    with pytest.raises(ValueError, match="unknown export format"):
        export_model(model, tmp_path / "m.tflite", "tflite")
    with pytest.raises(ValueError, match=r"\.pt2 archive"):
        export_model(model, tmp_path / "m.pt", "exported-program")
    assert not list(tmp_path.iterdir())
