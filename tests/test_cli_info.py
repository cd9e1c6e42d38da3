"""The ``atrous`` command line through ``atrous info``: JSON and text output, ``--set``, exit
code 2 for user errors, the console script and ``python -m atrous.cli``."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch

from atrous import build_model, load_config
from atrous.cli import main
from atrous.config import CONFIG_ROOT
from atrous.models.complexity import count_flops, count_parameters

DEMO = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"
MODEL4 = CONFIG_ROOT / "denseaspp_report" / "table1_model4.yaml"


def run_info(capsys, *args: str) -> dict:
    assert main(["info", *args, "--json"]) == 0
    out = capsys.readouterr().out
    return json.loads(out)


def test_cli_info_json_table1_model4(capsys):
    info = run_info(capsys, "--config", str(MODEL4), "--image-size", "64", "128")
    for key in (
        "params_total",
        "params_trainable",
        "output_stride",
        "receptive_field",
        "gflops",
        "gmacs",
    ):
        assert key in info
    assert info["params_trainable"] == 2252820
    assert info["params_total"] > info["params_trainable"]  # the DenseNet-121 trunk is frozen
    assert info["output_stride"] == 8
    assert info["receptive_field"] == 127
    assert info["image_size"] == [64, 128]
    assert info["global_context"] is False

    model = build_model(load_config(MODEL4, ["model.backbone.pretrained=false"]))  # no download
    flops = count_flops(model, (64, 128))  # = every conv's multiply-adds (tests/test_flops.py)
    assert info["gflops"] == pytest.approx(flops / 1e9, abs=5e-4)
    assert info["gmacs"] == pytest.approx(flops / 2e9, abs=5e-4)
    assert info["gflops"] > 0.1

    bigger = run_info(capsys, "--config", str(MODEL4), "--image-size", "128", "256")
    assert bigger["gflops"] / info["gflops"] == pytest.approx(4.0, rel=0.01)
    assert bigger["params_trainable"] == info["params_trainable"]


def test_cli_info_set_changes_the_model(capsys):
    base = run_info(capsys, "--config", str(DEMO), "--image-size", "64", "64")
    seven = run_info(
        capsys, "--config", str(DEMO), "--image-size", "64", "64", "--set", "model.num_classes=7"
    )
    # classifier: 1×1 conv from 512 + 5·32 = 672 channels, 673 parameters per class
    assert base["params_total"] - seven["params_total"] == (19 - 7) * 673


def test_cli_info_text_output(capsys):
    assert main(["info", "--config", str(DEMO), "--image-size", "64", "64"]) == 0
    out = capsys.readouterr().out
    assert "output stride     8" in out
    assert "receptive field   127 feature-map pixels" in out
    assert "cost at 64x64" in out


def test_cli_missing_config_exit_code_2(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["info", "--config", "nonexistent.yaml"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("atrous: error: ")
    assert "nonexistent.yaml" in captured.err and "atrous zoo" in captured.err


def test_cli_bad_value_exit_code_2(capsys):
    rc = main(["info", "--config", str(DEMO), "--set", "model.backbone.output_stride=12"])
    assert rc == 2
    assert "8, 16, 32" in capsys.readouterr().err


def test_cli_usage_error_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["info"])  # --config is required
    assert info.value.code == 2
    assert "--config" in capsys.readouterr().err


def _subprocess_info(cmd: list[str], cwd: Path) -> dict:
    result = subprocess.run(
        [*cmd, "info", "--config", str(DEMO), "--image-size", "64", "64", "--json"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_console_script(tmp_path):
    script = Path(sys.executable).with_name("atrous")
    assert script.is_file(), f"console script not installed next to {sys.executable}"
    info = _subprocess_info([str(script)], cwd=tmp_path)
    assert info["output_stride"] == 8
    assert info["receptive_field"] == 127
    assert info["image_size"] == [64, 64]
    assert info["params_total"] == count_parameters(build_model(DEMO))[0]


def test_python_dash_m(tmp_path):
    info = _subprocess_info([sys.executable, "-m", "atrous.cli"], cwd=tmp_path)
    assert info["output_stride"] == 8


def test_cli_user_errors_exit_2_without_traceback(repo_root, capsys, monkeypatch, tmp_path):
    config = "demo/denseaspp_resnet18_small"
    assert main(["info", "--config", config, "--image-size", "4", "4"]) == 2
    assert "output stride" in capsys.readouterr().err
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    # info counts the architecture: it never downloads; fit needs the weights and says where to put them
    assert main(["info", "--config", config, "--set", "model.backbone.pretrained=true"]) == 0
    capsys.readouterr()
    assert main(["fit", "--config", config, "--set", "model.backbone.pretrained=true",
                 f"train.output_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "put the file at" in err and str(tmp_path) in err
    assert main(["info", "--config", config, "--set", "model.head.bogus=1"]) == 2
    assert "demo/denseaspp_resnet18_small" in capsys.readouterr().err
