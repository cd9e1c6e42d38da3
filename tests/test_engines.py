"""Engines (atrous.engines): every engine agrees with PyTorch eager, test-time strategies run on
each, the on-disk cache is found again, keyed right and safe for concurrent builders, and the
CLI options fail with one clear line."""

from __future__ import annotations

import json
import multiprocessing
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers_engines import CONFIG, save_checkpoint, tiny_model
from helpers_predict import random_image
from PIL import Image

from atrous.cli import main
from atrous.deploy.engine_benchmark import fractions_of_peak
from atrous.engines import EngineOptions, build_engine
from atrous.engines import files as engine_files
from atrous.engines.cache import (
    USAGE,
    CompiledBlobs,
    cached_build,
    compiled_cache_bytes,
    default_cache_dir,
    entries,
    model_digest,
)
from atrous.errors import DeviceError, InputError, MissingExtraError
from atrous.evaluation.inference import predict, predict_probabilities
from atrous.models.complexity import count_flops

pytestmark = pytest.mark.usefixtures("one_thread")

EXPORTED = ("onnxruntime", "openvino")
AGREEMENT = 0.999  # fp32 engines' labels >= 99.9% equal to eager


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture
def model() -> torch.nn.Module:
    """A fresh one per test: the torch engine puts the model it wraps in channels_last."""
    return tiny_model()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt")


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean())


@pytest.mark.parametrize("engine", ["torch", *EXPORTED])
def test_engines_agree_with_eager_on_other_sizes_and_batches(engine, model, cache):
    built = build_engine(model, EngineOptions(engine=engine, cache_dir=cache), "cpu", log=False)
    assert (built.num_classes, built.output_stride) == (19, 8)
    for shape in [(1, 3, 64, 96), (3, 3, 40, 72), (2, 3, 37, 61)]:  # odd sizes too
        x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)))
        with torch.no_grad():
            expected, actual = model(x), built(x)
        assert actual.shape == expected.shape and actual.dtype == torch.float32
        assert torch.allclose(actual, expected, atol=1e-3, rtol=1e-3), float((actual - expected).abs().max())
        assert _agreement(actual, expected) >= AGREEMENT


def test_torch_engine_layouts_and_autocast(model):
    cpu = torch.device("cpu")
    default = build_engine(tiny_model(), EngineOptions(), cpu)
    assert default.memory_format == torch.channels_last, "auto: channels_last on the CPU"
    nchw = build_engine(tiny_model(), EngineOptions(memory_format="contiguous"), cpu)
    assert nchw.memory_format == torch.contiguous_format
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        reference = model(x)
        assert torch.equal(nchw(x), reference), "NCHW eager is the model itself"
        assert _agreement(default(x), reference) >= AGREEMENT
        bf16 = build_engine(tiny_model(), EngineOptions(precision="bf16"), cpu)(x)
    assert bf16.dtype == torch.float32 and _agreement(bf16, reference) > 0.9


@pytest.mark.slow
def test_torch_compile_engine(model, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # Inductor's own on-disk cache
    compiled = build_engine(tiny_model(), EngineOptions(compile=True), "cpu")
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert _agreement(compiled(x), model(x)) >= AGREEMENT
    assert compiled.run is not compiled.model, "the forward goes through torch.compile"


@pytest.mark.parametrize("engine", EXPORTED)
def test_test_time_strategies_run_on_exported_engines(engine, model, cache):
    built = build_engine(model, EngineOptions(engine=engine, cache_dir=cache), "cpu", log=False)
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    for options in ({"scales": (0.75, 1.0, 1.25), "flip": True}, {"window": (48, 64), "overlap": 0.25},
                    {"scales": (0.5, 1.0), "average": "log_probabilities"}):
        expected = predict_probabilities(model, x, **options)
        actual = predict_probabilities(built, x, **options)
        assert torch.allclose(actual, expected, atol=1e-4), options
        assert _agreement(actual, expected) >= AGREEMENT


@pytest.mark.parametrize("engine", EXPORTED)
def test_output_stride_is_built_into_exported_engines(engine, cache):
    model = tiny_model(num_stages=3)
    built = build_engine(model, EngineOptions(engine=engine, output_stride=16, cache_dir=cache), "cpu", log=False)
    assert built.output_stride == 16 and model.output_stride == 8, "the caller's model is untouched"
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        model.set_output_stride(16)
        assert _agreement(built(x), model(x)) >= AGREEMENT
        model.set_output_stride(8)
    assert predict(built, x).shape == (1, 64, 96)


def test_the_torch_engine_runs_a_redilated_copy_at_its_output_stride():
    model = tiny_model(num_stages=3)
    built = build_engine(model, EngineOptions(output_stride=16, memory_format="contiguous"), "cpu", log=False)
    assert built.output_stride == 16 and built.model.output_stride == 16 and model.output_stride == 8
    assert built.model is not model and all(torch.equal(a, b) for a, b in zip(
        built.model.state_dict().values(), model.state_dict().values(), strict=True)), "the same weights"
    same = build_engine(model, EngineOptions(output_stride=8, memory_format="contiguous"), "cpu", log=False)
    assert same.model is model  # at the model's own stride the engine runs the model itself


def test_cache_is_found_again_and_keyed_by_weights(tmp_path, monkeypatch):
    model = tiny_model()
    first = engine_files.onnx_entry(model, tmp_path, log=False)
    assert first.built and (first.path / "meta.json").is_file()
    monkeypatch.setattr(engine_files, "export_onnx", lambda *a, **k: pytest.fail("exported again"))
    again = engine_files.onnx_entry(tiny_model(), tmp_path, log=False)
    assert not again.built and again.path == first.path, "same architecture and weights: the same entry"
    changed = tiny_model()
    with torch.no_grad():
        changed.classifier.bias.add_(1e-6)
    assert model_digest(changed) != model_digest(model)
    with pytest.raises(pytest.fail.Exception, match="exported again"):  # a new entry is needed
        engine_files.onnx_entry(changed, tmp_path, log=False)
    assert [e.path for e in entries(tmp_path)] == [first.path], "a failed build leaves no entry or temporary"
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.path.name]


def test_a_broken_entry_is_rebuilt(tmp_path):
    model = tiny_model()
    entry = engine_files.onnx_entry(model, tmp_path, log=False)
    (entry.path / "model.onnx").unlink()  # removed by hand
    rebuilt = engine_files.onnx_entry(model, tmp_path, log=False)
    assert rebuilt.built and (rebuilt.path / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [entry.path.name]


def test_a_corrupt_file_in_the_cache_is_rebuilt(tmp_path, capsys):
    model = tiny_model()
    options = EngineOptions(engine="onnxruntime", cache_dir=tmp_path)
    build_engine(model, options, "cpu", log=False)
    (entry,) = entries(tmp_path)
    (entry.path / "model.onnx").write_bytes(b"truncated")
    engine = build_engine(model, options, "cpu", log=False)
    assert "changed on disk since it was built (model.onnx)" in capsys.readouterr().err
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert _agreement(engine(x), model(x)) >= AGREEMENT
    assert [e.path for e in entries(tmp_path)] == [entry.path] and len(list(tmp_path.iterdir())) == 1


def test_another_models_file_swapped_into_the_cache_is_rebuilt(tmp_path, capsys):
    """A valid ONNX file of another model loads fine: only the recorded sha256 tells it apart."""
    model, other = tiny_model(), tiny_model()
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn_like(p))
    options = EngineOptions(engine="onnxruntime", cache_dir=tmp_path / "mine")
    build_engine(model, options, "cpu", log=False)
    build_engine(other, EngineOptions(engine="onnxruntime", cache_dir=tmp_path / "other"), "cpu", log=False)
    (entry,) = entries(tmp_path / "mine")
    (theirs,) = entries(tmp_path / "other")
    shutil.copyfile(theirs.path / "model.onnx", entry.path / "model.onnx")
    engine = build_engine(model, options, "cpu", log=False)
    assert "changed on disk" in capsys.readouterr().err
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert _agreement(engine(x), model(x)) >= AGREEMENT


def test_concurrent_builders_publish_one_entry(tmp_path):
    """While one process builds, another publishes the same entry: the first one's copy is
    discarded and both use the published files."""
    def theirs(folder: Path) -> dict[str, str]:
        (folder / "f.txt").write_text("theirs")
        return {"f": "f.txt"}

    def build(folder: Path) -> dict[str, str]:
        (folder / "f.txt").write_text("mine")
        cached_build(tmp_path, "x", theirs, describe={})  # the other process, finishing first
        return {"f": "f.txt"}

    entry = cached_build(tmp_path, "x", build, describe={})
    assert not entry.built and entry.file("f").read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"], "no temporary folder is left"


def _build_in_process(root: str, queue) -> None:
    torch.set_num_threads(1)
    entry = engine_files.onnx_entry(tiny_model(), Path(root), log=False)
    queue.put(str(entry.path))


@pytest.mark.slow
def test_two_processes_building_at_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_build_in_process, args=(str(tmp_path), queue)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
        assert w.exitcode == 0
    paths = {queue.get(timeout=5) for _ in workers}
    assert len(paths) == 1 and [p.name for p in tmp_path.iterdir()] == [Path(paths.pop()).name]


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "a"))
    assert default_cache_dir() == tmp_path / "a" / "engines"
    monkeypatch.delenv("ATROUS_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "atrous" / "engines"


def test_compiled_blobs_are_bounded_least_recently_used_first(tmp_path):
    def compile_(key: str, size: int = 0) -> list[str]:
        before = blobs.snapshot()
        if size:  # a new size: OpenVINO writes its blob (else it loads the one it wrote before)
            (tmp_path / f"{key}.blob").write_bytes(b"x" * size)
        return blobs.used(key, before)

    blobs = CompiledBlobs(tmp_path, max_bytes=250)
    assert compile_("a", 100) == [] and compile_("b", 100) == []
    assert compile_("a") == []  # loaded again: a is now the most recently used
    assert compile_("c", 100) == ["b.blob"]  # 300 > 250 bytes: b, used longest ago, goes
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.blob", "c.blob", USAGE])
    assert json.loads((tmp_path / USAGE).read_text()) == {"a": ["a.blob"], "c": ["c.blob"]}
    assert compile_("d", 400) == ["a.blob", "c.blob"]  # larger than the bound alone: only it stays
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["d.blob", USAGE])


def test_the_compiled_cache_bound_follows_the_environment(monkeypatch):
    assert compiled_cache_bytes() == 1024 * 2**20
    monkeypatch.setenv("ATROUS_COMPILED_CACHE_MB", "0.5")
    assert compiled_cache_bytes() == 2**19
    monkeypatch.setenv("ATROUS_COMPILED_CACHE_MB", "0")
    assert compiled_cache_bytes() is None
    monkeypatch.setenv("ATROUS_COMPILED_CACHE_MB", "lots")
    with pytest.raises(InputError, match="ATROUS_COMPILED_CACHE_MB=lots: a size in megabytes"):
        compiled_cache_bytes()


def test_openvino_keeps_its_compiled_blobs_within_the_bound(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_COMPILED_CACHE_MB", "0.001")  # less than one blob: only the last size stays
    built = build_engine(model, EngineOptions(engine="openvino", cache_dir=tmp_path), "cpu", log=False)
    with torch.no_grad():
        for side in (32, 40):
            built(torch.zeros(1, 3, side, side))
            (compiled,) = tmp_path.glob("openvino-*/compiled")
            blobs = [p for p in compiled.iterdir() if p.name != USAGE]
            assert len(blobs) == 1
            assert json.loads((compiled / USAGE).read_text()) == {f"fp32 1x3x{side}x{side}": [blobs[0].name]}


def test_no_cache_keeps_nothing(model, tmp_path, monkeypatch):
    monkeypatch.setenv("ATROUS_CACHE_DIR", str(tmp_path / "cache"))
    built = build_engine(model, EngineOptions(engine="openvino", use_cache=False), "cpu", log=False)
    x = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        assert _agreement(built(x), model(x)) >= AGREEMENT, "runs after its temporary files are gone"
    assert not (tmp_path / "cache").exists()


# -- the command line ------------------------------------------------------------------------
def test_predict_with_each_engine_writes_the_same_labels(checkpoint, cache, tmp_path):
    random_image(tmp_path / "in" / "a.png", size=(48, 80))
    labels = {}
    for engine in ("torch", *EXPORTED):
        out = tmp_path / engine
        assert main(["predict", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--output", str(out),
                     "--device", "cpu", "--no-progress", "--engine", engine, "--engine-cache", str(cache),
                     "--precision", "fp32", "--scales", "0.75", "1", "--flip"]) == 0
        labels[engine] = torch.from_numpy(np.array(Image.open(out / "a_labels.png")))
    for engine in EXPORTED:
        assert float((labels[engine] == labels["torch"]).float().mean()) >= AGREEMENT


def test_validate_with_an_engine_records_it(checkpoint, cache, tmp_path):
    scores = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / engine
        assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(out), "--engine", engine,
                     "--engine-cache", str(cache)]) == 0
        scores[engine] = json.loads((out / "metrics.json").read_text())
    assert scores["onnxruntime"]["engine"]["engine"] == "onnxruntime"
    assert scores["onnxruntime"]["mIoU"] == pytest.approx(scores["torch"]["mIoU"], abs=1e-3)


@pytest.mark.parametrize("args, message", [
    (["--precision", "int8"], "--precision int8 runs a quantized model.*atrous quantize"),
    (["--engine", "onnxruntime", "--compile"], "--compile and --memory-format apply to --engine torch"),
    (["--engine", "onnxruntime", "--precision", "fp16"], "--engine onnxruntime runs fp32/int8, not --precision fp16"),
    (["--engine", "torch", "--precision", "int8", "--quantized", "q"], "--engine torch runs fp32/bf16/fp16.*atrous quantize"),
    (["--engine", "openvino", "--precision", "int8", "--quantized", "nowhere"], "no quantization.json"),
])
def test_engine_option_mistakes_are_one_line(args, message, checkpoint, cache, tmp_path, capsys):
    random_image(tmp_path / "a.png")
    code = main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "o"),
                 "--no-progress", "--engine-cache", str(cache), "--device", "cpu", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("atrous: error:"), err
    assert re.search(message, err[0]), err[0]
    assert not (tmp_path / "o").exists()


def test_openvino_refuses_a_cuda_device(model):
    with pytest.raises(DeviceError, match="openvino runs on the CPU here, not cuda:1; use --device cpu"):
        build_engine(model, EngineOptions(engine="openvino"), "cuda:1")


def test_a_missing_extra_names_the_pip_install(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r'--engine openvino needs openvino: pip install "atrous\[openvino\]"'):
        build_engine(model, EngineOptions(engine="openvino"), "cpu")


def test_cache_entries_are_readable_json(cache):
    build_engine(tiny_model(), EngineOptions(engine="openvino", cache_dir=cache), "cpu", log=False)  # cached if run after the others
    found = list(entries(cache))
    assert {e.meta["kind"] for e in found} >= {"onnx", "openvino"}
    for entry in found:
        meta = json.loads((entry.path / "meta.json").read_text())
        assert meta["model_sha256"] and meta["versions"]["torch"] == torch.__version__
        assert all((entry.path / f).is_file() for f in meta["files"].values())


def test_engine_options_reject_unknown_values():
    with pytest.raises(InputError, match="unknown engine"):
        EngineOptions(engine="tflite")
    with pytest.raises(InputError, match="unknown precision"):
        EngineOptions(precision="int4")
    with pytest.raises(InputError, match="--quantized q is an int8 model"):
        EngineOptions(engine="openvino", quantized=Path("q"))
    assert EngineOptions(compile=True).describe() == "torch fp32 compiled"


def test_benchmark_engines_side_by_side(cache, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    code = main(["benchmark", "--config", str(config), "--engines", "eager", "torch", "onnxruntime", "--image-size", "64", "96",
                 "--repeats", "3", "--warmup", "1", "--engine-cache", str(cache), "--output", str(tmp_path / "r.json")])
    assert code == 0
    report = json.loads((tmp_path / "r.json").read_text())
    (group,) = report["groups"]
    assert group["reference"] == "atrous eager"
    assert [r["engine"] for r in group["rows"]] == ["eager", "torch", "onnxruntime"]
    assert all(len(r["latency"]["runs_ms"]) == 3 for r in group["rows"])
    assert group["speedup"]["atrous eager"]["paired_median"] == 1.0
    printed = capsys.readouterr().out
    assert "speed-up over atrous eager" in printed and "atrous onnxruntime" in printed
    flops = count_flops(tiny_model(), (64, 96))
    for row in group["rows"]:  # achieved rate = the network's FLOPs over the median latency
        assert row["gflops_per_s"] == pytest.approx(flops / row["latency"]["median_ms"] * 1e3 / 1e9, rel=0.01, abs=0.1)
        assert row["precision"] == "fp32"


def test_engine_rows_are_read_against_the_peak_of_their_precision():
    report = {"groups": [{"rows": [{"precision": "fp32", "gflops_per_s": 50.0}, {"precision": "bf16", "gflops_per_s": 300.0},
                                   {"precision": "int8", "gflops_per_s": 900.0}]}]}
    peak = {"rows": [{"op": "conv3x3", "precision": "fp32", "dilation": 1, "shape": [1, 256, 8, 16], "out_channels": 256,
                      "tflops_per_s": 0.1},
                     {"op": "conv3x3", "precision": "fp32", "dilation": 12, "shape": [1, 2048, 8, 16], "out_channels": 256,
                      "tflops_per_s": 0.2},
                     {"op": "conv3x3", "precision": "bf16", "dilation": 1, "shape": [1, 256, 8, 16], "out_channels": 256,
                      "tflops_per_s": 1.2}]}
    fractions_of_peak(report, peak)
    assert [r["fraction_of_peak"] for r in report["groups"][0]["rows"]] == [0.5, 0.25, None]


def test_benchmark_engine_names_are_checked(capsys):
    assert main(["benchmark", "--peers", "--engines", "eager", "tflite"]) == 2
    assert "unknown ['tflite']" in capsys.readouterr().err
    assert main(["benchmark", "--peers", "--engines", "tensorrt"]) == 2
    assert "not on cpu" in capsys.readouterr().err
