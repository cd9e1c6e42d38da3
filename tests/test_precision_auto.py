"""``--precision auto`` and ``train.precision: auto``: the CPU's units are read from its flags, the
choice per feature set is the documented one (detection mocked, so every CPU kind is tested on
any machine), the engine and the run say and record what was chosen."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_engines import CONFIG, save_checkpoint, tiny_model
from helpers_predict import random_image

from atrous.cli import main
from atrous.config import ConfigError
from atrous.engines import EngineOptions, build_engine
from atrous.engines import precision as precision_module
from atrous.engines.precision import choose_precision, choose_training_precision
from atrous.hardware import CpuFeatures, parse_cpuinfo
from atrous.training.runner import build_trainer, training_memory_format, training_precision
from atrous.training.train_section import TrainConfig

# The flags lines of three processors these machines come with (abridged to what matters).
SAPPHIRE_RAPIDS = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n"
ZEN4 = "processor : 0\nflags : fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
ZEN3 = "processor : 0\nflags : fpu sse avx2 fma\n"
CPUS = {"amx": parse_cpuinfo(SAPPHIRE_RAPIDS), "avx512_bf16": parse_cpuinfo(ZEN4), "avx2": parse_cpuinfo(ZEN3)}
CPU = torch.device("cpu")


def test_cpu_flags_are_read_into_features():
    amx, zen4, zen3 = CPUS["amx"], CPUS["avx512_bf16"], CPUS["avx2"]
    assert amx.amx_bf16 and amx.amx_int8 and amx.fast_bf16 and amx.fast_int8
    assert amx.describe() == "AMX (bf16, int8)"
    assert zen4.fast_bf16 and not zen4.amx_bf16 and zen4.vnni and zen4.describe() == "AVX512-BF16 and VNNI"
    assert not zen3.fast_bf16 and not zen3.fast_int8 and zen3.describe() == "AVX2 only"
    assert parse_cpuinfo("processor : 0\n") == CpuFeatures()


@pytest.mark.parametrize("cpu, engine, expected", [
    ("amx", "torch", "bf16"), ("amx", "openvino", "bf16"), ("amx", "onnxruntime", "fp32"),
    ("avx512_bf16", "torch", "bf16"), ("avx512_bf16", "openvino", "bf16"),
    ("avx2", "torch", "fp32"), ("avx2", "openvino", "fp32"), ("avx2", "onnxruntime", "fp32"),
])
def test_auto_picks_bf16_only_where_the_cpu_computes_it(cpu, engine, expected):
    choice = choose_precision(engine, CPU, CPUS[cpu])
    assert choice.precision == expected
    assert choice.describe().startswith(f"--precision auto: {expected} (")


@pytest.mark.parametrize("cpu, expected", [("amx", "bf16-mixed"), ("avx512_bf16", "bf16-mixed"), ("avx2", "32-true")])
def test_training_auto_picks_bf16_mixed_only_where_the_cpu_computes_it(cpu, expected):
    assert choose_training_precision(on_cuda=False, features=CPUS[cpu]).precision == expected


def test_a_quantized_folder_with_auto_is_int8(tmp_path):
    assert EngineOptions(engine="openvino", precision="auto", quantized=tmp_path).precision == "int8"


@pytest.mark.parametrize("cpu, expected", [("amx", "bf16"), ("avx2", "fp32")])
def test_build_engine_resolves_auto_and_says_why(cpu, expected, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: CPUS[cpu])
    engine = build_engine(tiny_model(), EngineOptions(precision="auto"), "cpu")
    assert engine.options.precision == expected
    assert engine.options.describe().startswith(f"torch {expected} (--precision auto: this CPU has {CPUS[cpu].describe()}")
    x = torch.randn(1, 3, 64, 96)
    assert engine(x).dtype == torch.float32  # logits come back in float32 either way


def test_validate_records_the_precision_auto_chose(tmp_path, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: CPUS["amx"])
    checkpoint = save_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "val"
    assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(out), "--precision", "auto"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["engine"]["precision"] == "bf16"
    assert metrics["engine"]["precision_reason"] == "this CPU has AMX (bf16, int8)"
    assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(tmp_path / "fp32")]) == 0
    assert json.loads((tmp_path / "fp32" / "metrics.json").read_text())["engine"]["precision"] == "fp32"  # the default


@pytest.mark.parametrize("cpu, expected", [("amx", "bf16-mixed"), ("avx2", "32-true")])
def test_train_precision_auto_builds_the_trainer_it_chose(cpu, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: CPUS[cpu])
    cfg = TrainConfig.from_mapping({**CONFIG["train"], "precision": "auto", "output_dir": str(tmp_path)})
    assert training_precision(cfg).precision == expected
    trainer = build_trainer(cfg, for_fit=False)
    assert trainer.precision == expected
    assert training_memory_format(cfg) == torch.channels_last  # accelerator cpu


def test_train_memory_format_is_checked():
    with pytest.raises(ConfigError, match="train.memory_format: one of"):
        TrainConfig.from_mapping({"memory_format": "nhwc"})
    assert training_memory_format(TrainConfig.from_mapping({"memory_format": "contiguous"})) == torch.contiguous_format


def test_predict_says_which_precision_ran(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: CPUS["avx2"])
    checkpoint = save_checkpoint(tmp_path / "tiny.ckpt")
    random_image(tmp_path / "a.png", size=(48, 80))
    assert main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "out"),
                 "--device", "cpu", "--no-progress"]) == 0
    assert "the model ran in torch fp32 (--precision auto: this CPU has AVX2 only" in capsys.readouterr().out


@pytest.mark.parametrize("cpu, precision, expected", [
    ("amx", "int8", "bf16"), ("avx512_bf16", "int8", "bf16"), ("avx2", "int8", "f32"),
    ("amx", "fp32", "f32"), ("amx", "bf16", "bf16"),
])
def test_openvino_int8_runs_its_unquantized_layers_in_bf16_where_the_cpu_computes_it(cpu, precision, expected):
    from atrous.engines.openvino_engine import inference_hint

    assert inference_hint(precision, CPUS[cpu]) == expected
