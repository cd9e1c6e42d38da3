"""atrous quantize: int8 calibrated on the split's images, a report whose int8 mIoU is what
``atrous validate --precision int8`` measures, and a quantized folder only its own model loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_engines import save_checkpoint

from atrous.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(scope="module")
def quantized(tmp_path_factory, cache) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("quantize")
    checkpoint = save_checkpoint(root / "tiny.ckpt")
    code = main(["quantize", "--checkpoint", str(checkpoint), "--engine", "openvino", "--num-images", "4",
                 "--output", str(root / "int8"), "--repeats", "2", "--engine-cache", str(cache)])
    assert code == 0
    return checkpoint, root / "int8"


def test_quantize_writes_the_model_and_a_report(quantized):
    checkpoint, folder = quantized
    manifest = json.loads((folder / "quantization.json").read_text())
    assert manifest["engine"] == "openvino" and manifest["calibration"]["num_images"] == 4
    assert manifest["calibration"]["split"] == "train" and manifest["output_stride"] == 8
    assert all((folder / f).is_file() for f in manifest["files"].values())
    report = json.loads((folder / "report.json").read_text())
    val = report["val"]
    assert set(val["mIoU"]) == {"openvino fp32", "openvino int8"}
    assert 0.0 <= val["agreement"] <= 1.0 and val["pixels"] == 3 * 64 * 96  # the 3 val images
    fp32, int8 = val["mIoU"].values()
    assert val["mIoU_lost_points"] == pytest.approx(100 * (fp32 - int8), abs=1e-3)
    assert set(report["timing"]["latency"]) == {"openvino fp32", "openvino int8"}


def test_validate_takes_the_quantized_model_and_agrees_with_the_report(quantized, cache, tmp_path):
    checkpoint, folder = quantized
    assert main(["validate", "--checkpoint", str(checkpoint), "--output", str(tmp_path), "--engine", "openvino",
                 "--precision", "int8", "--quantized", str(folder), "--engine-cache", str(cache)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    report = json.loads((folder / "report.json").read_text())
    assert metrics["mIoU"] == pytest.approx(report["val"]["mIoU"]["openvino int8"], abs=1e-9)
    assert metrics["engine"] == {"engine": "openvino", "precision": "int8", "precision_reason": None, "compile": False,
                                 "memory_format": "auto", "quantized": str(folder)}


def test_predict_takes_the_quantized_model(quantized, cache, tmp_path):
    from helpers_predict import random_image

    checkpoint, folder = quantized
    random_image(tmp_path / "a.png", size=(64, 96))
    assert main(["predict", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "o"),
                 "--device", "cpu", "--no-progress", "--engine", "openvino", "--precision", "int8",
                 "--quantized", str(folder)]) == 0
    assert (tmp_path / "o" / "a_labels.png").is_file()


def test_a_quantized_folder_refuses_anothersave_checkpoint(quantized, tmp_path, capsys):
    _, folder = quantized
    other = save_checkpoint(tmp_path / "other.ckpt", seed=5)
    code = main(["validate", "--checkpoint", str(other), "--output", str(tmp_path / "v"), "--engine", "openvino",
                 "--precision", "int8", "--quantized", str(folder)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "quantized from another model" in err[0]
    code = main(["validate", "--checkpoint", str(quantized[0]), "--output", str(tmp_path / "v"),
                 "--engine", "onnxruntime", "--precision", "int8", "--quantized", str(folder)])
    assert code == 2 and "pass --engine openvino" in capsys.readouterr().err


def test_quantize_never_replaces_what_it_did_not_write(quantized, tmp_path, capsys):
    checkpoint, _ = quantized
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):
        code = main(["quantize", "--checkpoint", str(checkpoint), "--output", str(mine), "--num-images", "1", *extra])
        assert code == 2 and "--output" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep me" and [p.name for p in mine.iterdir()] == ["notes.txt"]
    code = main(["quantize", "--checkpoint", str(checkpoint), "--output", str(checkpoint.parent), "--overwrite",
                 "--num-images", "1"])
    assert code == 2 and "holds the input" in capsys.readouterr().err and checkpoint.is_file()


def test_onnxruntime_int8_without_evaluation(quantized, cache, tmp_path):
    checkpoint, _ = quantized
    folder = tmp_path / "ort"
    assert main(["quantize", "--checkpoint", str(checkpoint), "--engine", "onnxruntime", "--num-images", "2",
                 "--calibration", "val", "--output", str(folder), "--no-evaluate", "--repeats", "1",
                 "--engine-cache", str(cache)]) == 0
    report = json.loads((folder / "report.json").read_text())
    assert report["val"] is None and report["calibration"] == {"split": "val", "num_images": 2}
    assert (folder / "model_int8.onnx").is_file() and not (folder / "model_prepared.onnx").exists()
    # --overwrite moves the earlier result aside and keeps the user's own files
    (folder / "notes.txt").write_text("mine")
    first = (folder / "model_int8.onnx").read_bytes()
    assert main(["quantize", "--checkpoint", str(checkpoint), "--engine", "onnxruntime", "--num-images", "1",
                 "--output", str(folder), "--no-evaluate", "--repeats", "1", "--overwrite",
                 "--engine-cache", str(cache)]) == 0
    assert json.loads((folder / "quantization.json").read_text())["calibration"]["num_images"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ort"], "no temporary left beside it"
    assert (folder / "notes.txt").read_text() == "mine"
    (aside,) = folder.glob("replaced-*")
    assert (aside / "model_int8.onnx").read_bytes() == first and (aside / "quantization.json").is_file()
    assert sorted(p.name for p in aside.iterdir()) == ["model_fp32.onnx", "model_int8.onnx", "quantization.json",
                                                       "report.json"]


def test_a_changed_int8_model_is_refused(quantized, tmp_path, capsys):
    """The sha256 recorded when the folder was written is checked, not only the manifest's claim."""
    import shutil

    checkpoint, folder = quantized
    copy = tmp_path / "int8"
    shutil.copytree(folder, copy)
    binary = copy / "model_int8.bin"
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0xFF
    binary.write_bytes(bytes(data))
    code = main(["validate", "--checkpoint", str(checkpoint), "--engine", "openvino", "--precision", "int8",
                 "--quantized", str(copy), "--output", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("atrous: error: --quantized") and "model_int8.bin changed" in err[-1]
