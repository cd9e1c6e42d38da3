"""Loading a checkpoint never fetches weights it is about to overwrite.

A run trained from ImageNet weights stores ``pretrained: true`` in its config. Every command
that loads a checkpoint (predict, validate, test, export, analyze, resume) and every command that
only needs the architecture (info, zoo, benchmark, convert's target) must work with an empty
torch hub cache and no network: the tests below make any download attempt fail loudly.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from atrous.cli import main
from atrous.errors import CheckpointError
from atrous.models import build_model
from atrous.models.checkpoint import load_segmentor
from atrous.training.runner import fit

CONFIG = {
    "model": {
        "num_classes": 19,
        "backbone": {"name": "resnet18", "output_stride": 16, "pretrained": True},  # ImageNet weights
        "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
    },
    "data": {
        "dataset": {"name": "synthetic", "image_size": [32, 64]},
        "train": {"split": "train", "length": 4},
        "val": {"split": "val", "length": 2},
        "test": {"split": "test", "length": 2},
        "batch_size": 2,
        "num_workers": 0,
    },
    "train": {"max_steps": 1, "max_epochs": None, "progress_bar": False, "accelerator": "cpu",
              "log_every_n_steps": 1},
}


class NetworkUsed(AssertionError):
    pass


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """An empty torch hub cache, and any download is a test failure."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))

    def refuse(url, *args, **kwargs):
        raise NetworkUsed(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def _config(output_dir: Path, pretrained: bool = True) -> dict:
    cfg = copy.deepcopy(CONFIG)
    cfg["model"]["backbone"]["pretrained"] = pretrained
    cfg["train"]["output_dir"] = str(output_dir)
    return cfg


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """An atrous checkpoint (the layout ``atrous fit`` writes) whose config says ``pretrained: true``."""
    cfg = _config(tmp_path / "run")
    torch.manual_seed(0)
    model = build_model(cfg, pretrained_backbone=False)
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": cfg, "class_names": [f"c{i}" for i in range(19)], "ignore_index": 255}},
               path)
    return path


def test_the_offline_fixture_would_catch_a_download(offline):
    with pytest.raises(Exception, match="tried to download|Could not download"):
        build_model(CONFIG)  # building with pretrained: true does try


def test_load_segmentor_builds_without_pretrained_weights(offline, checkpoint):
    model, cfg = load_segmentor(checkpoint)
    assert cfg["model"]["backbone"]["pretrained"] is True  # the stored config is kept as trained
    expected = torch.load(checkpoint, weights_only=True)["state_dict"]
    assert all(torch.equal(v, expected[f"model.{k}"]) for k, v in model.state_dict().items())
    assert not model.training


@pytest.mark.parametrize("command", ["validate", "test"])
def test_validate_and_test_use_the_checkpoint_offline(offline, checkpoint, tmp_path, command):
    assert main([command, "--checkpoint", str(checkpoint), "--output", str(tmp_path / command)]) == 0
    assert (tmp_path / command / "metrics.json").is_file()


def test_predict_export_and_analyze_use_the_checkpoint_offline(offline, checkpoint, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 64, 3), np.uint8)).save(images / "a.png")
    assert main(["predict", str(images), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "pred"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert (tmp_path / "pred" / "a_labels.png").is_file()
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript",
                 "--output", str(tmp_path / "model.pt"), "--image-size", "32", "64"]) == 0
    assert main(["analyze", "confusion", "--checkpoint", str(checkpoint), "--num-images", "1",
                 "--output", str(tmp_path / "analysis"), "--device", "cpu"]) == 0


def test_architecture_only_commands_never_download(offline, tmp_path, capsys):
    config = tmp_path / "pretrained.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path / "run")))
    assert main(["info", "--config", str(config), "--image-size", "32", "64"]) == 0
    assert main(["benchmark", "--config", str(config), "--image-size", "32", "64", "--phases", "inference",
                 "--repeats", "1", "--warmup", "0"]) == 0
    assert main(["zoo"]) == 0  # every packaged config, pretrained ones included
    capsys.readouterr()


def test_resume_and_init_checkpoint_never_download(offline, tmp_path, monkeypatch):
    out = tmp_path / "run"
    # The first attempt ran while weights were at hand (here: built with pretrained off).
    fit(_config(out, pretrained=False))
    last = out / "checkpoints" / "last.ckpt"
    assert last.is_file()
    more = _config(out)  # the config says pretrained: true, as the user wrote it
    more["train"]["max_steps"] = 2
    metrics = fit(more, resume=True)
    assert metrics["split"] == "val"
    start = _config(tmp_path / "finetune")
    start["train"]["init_checkpoint"] = str(last)
    fit(start)


def test_a_checkpoint_of_another_model_is_a_checkpoint_error(checkpoint):
    other = _config(Path("unused"), pretrained=False)
    other["model"]["head"]["growth_channels"] = 4
    with pytest.raises(CheckpointError, match="different model"):
        load_segmentor(checkpoint, other)


def test_no_patches_remain():
    """One place decides: no command forces ``pretrained=false`` through an override any more."""
    src = Path(__file__).resolve().parents[1] / "src" / "atrous"
    offenders = [str(p.relative_to(src)) for p in src.rglob("*.py")
                 if "backbone.pretrained=false" in p.read_text() or '["pretrained"] = False' in p.read_text()]
    assert offenders == []
