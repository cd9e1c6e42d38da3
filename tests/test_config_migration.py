"""Checkpoints of earlier versions keep loading: their stored configs are migrated on load.

The DenseASPP head lost its options ``preactivation``, ``first_input_norm``, ``input_relu``,
``conv_bias``, ``concat_order`` and ``bn_momentum`` (now ``official: true``, and the backbone's
``official_layout`` ends in ``relu5``). Checkpoints written before store configs with them. The
network those options built is re-implemented below from the code of that version (the head's
module tree and forward; the backbone then had no ``relu5``), its random weights saved with the
old config, and the checkpoint loaded by the current code must compute exactly the same.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers_models import randomized_batchnorm
from PIL import Image
from torch import nn

from atrous.cli import main
from atrous.config import load_config
from atrous.errors import CheckpointError
from atrous.models import build_model
from atrous.models.checkpoint import load_segmentor
from atrous.models.config_migrations import migrate_config
from atrous.models.heads.base import Head
from atrous.models.pretrained import checkpoint_path, load_pretrained
from atrous.models.published import PUBLISHED_WEIGHTS
from atrous.models.segmentor import Segmentor

OLD_FLAGS = ("preactivation", "first_input_norm", "input_relu", "conv_bias", "concat_order", "bn_momentum")

# The model section of denseaspp/denseaspp121_cityscapes.yaml before the options were removed.
OLD_DENSEASPP121 = {
    "num_classes": 19,
    "backbone": {"name": "densenet121", "output_stride": 8, "official_layout": True, "pretrained": False},
    "head": {
        "name": "denseaspp", "atrous_rates": [3, 6, 12, 18, 24], "bottleneck_channels": 128, "growth_channels": 64,
        "first_input_norm": False, "input_relu": True, "conv_bias": True, "dropout": 0.1,
        "concat_order": "new_first", "bn_momentum": 0.0003,
    },
    "classifier_dropout": 0.1,
    "align_corners": True,
}
SMALL_HEAD = {"name": "denseaspp", "atrous_rates": [2, 4], "bottleneck_channels": 16, "growth_channels": 8}
RESNET = {"name": "resnet18", "output_stride": 8, "pretrained": False}
OFFICIAL_LAYOUT = {"name": "densenet121", "output_stride": 8, "official_layout": True, "pretrained": False}
OLD_OFFICIAL = {"first_input_norm": False, "input_relu": True, "conv_bias": True, "concat_order": "new_first",
                "bn_momentum": 0.0003}
OLD_DEFAULTS = {"preactivation": True, "first_input_norm": True, "input_relu": False, "conv_bias": False,
                "concat_order": "input_first", "bn_momentum": 0.1}


# -- the head as the code before the change built it (models/heads/denseaspp.py of that version) --
class OldDenseASPPLayer(nn.Module):
    def __init__(self, in_channels: int, growth_channels: int, rate: int, *, bottleneck_channels: int | None,
                 preactivation: bool, input_norm: bool, output_norm: bool, conv_bias: bool, dropout: float,
                 bn_momentum: float) -> None:
        super().__init__()
        self.preactivation, self.dropout = preactivation, dropout

        def bn(c: int) -> nn.BatchNorm2d:
            return nn.BatchNorm2d(c, momentum=bn_momentum)

        mid = bottleneck_channels or in_channels
        identity = nn.Identity()
        if preactivation:
            self.norm1 = bn(in_channels) if input_norm else identity
            self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=conv_bias) if bottleneck_channels else identity
            self.norm2 = bn(mid) if bottleneck_channels else identity
            self.conv2 = nn.Conv2d(mid, growth_channels, 3, padding=rate, dilation=rate, bias=conv_bias)
            self.norm3 = bn(growth_channels) if output_norm else identity
        else:
            self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=conv_bias) if bottleneck_channels else identity
            self.norm1 = bn(mid) if bottleneck_channels else identity
            self.conv2 = nn.Conv2d(mid, growth_channels, 3, padding=rate, dilation=rate, bias=conv_bias)
            self.norm2 = bn(growth_channels)
        self.has_bottleneck = bottleneck_channels is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            x = F.relu(self.norm1(x))
            if self.has_bottleneck:
                x = F.relu(self.norm2(self.conv1(x)))
            x = self.norm3(self.conv2(x))
        else:
            if self.has_bottleneck:
                x = F.relu(self.norm1(self.conv1(x)))
            x = F.relu(self.norm2(self.conv2(x)))
        if self.dropout > 0:
            x = F.dropout2d(x, self.dropout, self.training)
        return x


class OldDenseASPPHead(Head):
    def __init__(self, in_channels: int, atrous_rates: Sequence[int], *, growth_channels: int = 64,
                 bottleneck_channels: int | None = 256, preactivation: bool = True, first_input_norm: bool = True,
                 output_norm: bool = False, conv_bias: bool = False, dropout: float = 0.0,
                 concat_order: str = "input_first", bn_momentum: float = 0.1, input_relu: bool = False) -> None:
        super().__init__()
        self.concat_order, self.input_relu = concat_order, input_relu
        self.layers = nn.ModuleList(
            OldDenseASPPLayer(
                in_channels + i * growth_channels, growth_channels, rate, bottleneck_channels=bottleneck_channels,
                preactivation=preactivation, input_norm=first_input_norm or i > 0, output_norm=output_norm,
                conv_bias=conv_bias, dropout=dropout, bn_momentum=bn_momentum,
            )
            for i, rate in enumerate(atrous_rates)
        )
        self.out_channels = in_channels + len(self.layers) * growth_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_relu:
            x = F.relu(x)
        for layer in self.layers:
            new = layer(x)
            x = torch.cat([x, new] if self.concat_order == "input_first" else [new, x], dim=1)
        return x


def old_network(model: dict) -> Segmentor:
    """The network the old code built from ``model``: the backbone without ``relu5`` (then
    ``official_layout`` ended in ``norm5``), the old head; random weights and BN statistics."""
    head = {k: v for k, v in model["head"].items() if k not in OLD_FLAGS}  # a scaffold of the right widths
    torch.manual_seed(5)
    network = build_model({**model, "head": head}, pretrained_backbone=False)
    if model["backbone"].get("official_layout"):
        del network.backbone.features.relu5
    kwargs = {k: v for k, v in model["head"].items() if k != "name"}
    network.head = OldDenseASPPHead(network.backbone.out_channels, **kwargs)
    for module in network.head.modules():
        if isinstance(module, nn.Conv2d) and module.bias is not None:
            nn.init.normal_(module.bias, std=0.5)  # biases that matter
    return randomized_batchnorm(network)


def old_config(model: dict) -> dict:
    """A whole experiment config around ``model``, as an old run or conversion stored it."""
    cfg = load_config("denseaspp/denseaspp121_cityscapes")
    return {**cfg, "model": copy.deepcopy(model)}


def save_old_checkpoint(network: nn.Module, config: dict, path: Path) -> Path:
    """The layout ``atrous fit`` and ``atrous convert`` wrote (and write)."""
    torch.save({"state_dict": {f"model.{k}": v for k, v in network.state_dict().items()},
                "hyper_parameters": {"config": config, "class_names": None, "ignore_index": 255}}, path)
    return path


@pytest.fixture(scope="module")
def old_official(tmp_path_factory) -> tuple[Path, Segmentor]:
    """An old-format checkpoint of the official DenseASPP121 config, and the old network."""
    network = old_network(OLD_DENSEASPP121)
    path = tmp_path_factory.mktemp("old") / "denseaspp121_old.ckpt"
    return save_old_checkpoint(network, old_config(OLD_DENSEASPP121), path), network


# -- migrated configs build the old network ---------------------------------------------------------
CASES = {  # old model section → the current head it becomes
    "official": (OLD_DENSEASPP121, {**{k: v for k, v in OLD_DENSEASPP121["head"].items() if k not in OLD_FLAGS},
                                    "official": True}),
    "defaults spelled out": ({"num_classes": 3, "backbone": RESNET, "head": {**SMALL_HEAD, **OLD_DEFAULTS}}, SMALL_HEAD),
    "paper layers, rectified input": (
        {"num_classes": 3, "backbone": OFFICIAL_LAYOUT, "head": {**SMALL_HEAD, "input_relu": True, "preactivation": True}},
        SMALL_HEAD,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_old_checkpoint_loads_and_computes_exactly_what_the_old_network_did(case, tmp_path):
    model, expected_head = CASES[case]
    network = old_network(model)
    path = save_old_checkpoint(network, old_config(model), tmp_path / "old.ckpt")
    stored = path.read_bytes()
    loaded, cfg = load_segmentor(path)
    assert cfg["model"]["head"] == expected_head  # the current format, nothing else
    assert cfg["model"]["backbone"] == model["backbone"]
    assert path.read_bytes() == stored  # the user's file is not rewritten
    x = torch.randn(2, 3, 64, 72, dtype=torch.float64)
    with torch.no_grad():
        got, expected = loaded.double()(x), network.double()(x)
    assert torch.equal(got, expected)
    # Not vacuous: the old network's ReLU placement and layer settings change the outputs.
    if network.head.input_relu:
        network.head.input_relu = False
        with torch.no_grad():
            assert not torch.equal(network(x), expected)


def test_migrated_old_packaged_config_is_the_current_packaged_config():
    current = load_config("denseaspp/denseaspp121_cityscapes")
    stored = old_config(OLD_DENSEASPP121)
    before = copy.deepcopy(stored)
    assert migrate_config(stored, "old.ckpt") == current
    assert stored == before  # the stored config is not changed
    assert migrate_config(current, "new.ckpt") == current  # a current config passes unchanged


# -- what cannot be migrated ------------------------------------------------------------------
REFUSED = {
    "post-activation": ({"backbone": RESNET, "head": {**SMALL_HEAD, "preactivation": False}}, "post-activation"),
    "partial official set": ({"backbone": RESNET, "head": {**SMALL_HEAD, "first_input_norm": False}},
                             "neither the paper's .* nor the official code's"),
    "unknown concat order": ({"backbone": RESNET, "head": {**SMALL_HEAD, "concat_order": "random"}}, "concat_order"),
    "official set without official_layout": ({"backbone": RESNET, "head": {**SMALL_HEAD, **OLD_OFFICIAL}},
                                             "input_relu: true is now the ReLU at the end of a DenseNet's"),
    "official_layout without input_relu": ({"backbone": OFFICIAL_LAYOUT, "head": {**SMALL_HEAD, **OLD_DEFAULTS}},
                                           "now ends in a ReLU .* this network did not have"),
    "upsampled before the ReLU": ({"backbone": OFFICIAL_LAYOUT, "head": {**SMALL_HEAD, **OLD_OFFICIAL},
                                   "feature_upsample": 2}, "rectified the upsampled features"),
    "aux head on the rectified feature": ({"backbone": OFFICIAL_LAYOUT, "head": {**SMALL_HEAD, **OLD_OFFICIAL},
                                           "aux_head": {"feature": "block4"}}, "aux_head read block4"),
    "both formats": ({"backbone": OFFICIAL_LAYOUT, "head": {**SMALL_HEAD, **OLD_OFFICIAL, "official": True}},
                     "also sets the current `official`"),
}


@pytest.mark.parametrize("case", REFUSED)
def test_an_old_config_no_current_config_expresses_is_refused_naming_file_options_and_way_out(case):
    model, reason = REFUSED[case]
    with pytest.raises(CheckpointError, match=reason) as err:
        migrate_config({"model": {"num_classes": 3, **model}}, "runs/x/best.ckpt")
    message = str(err.value)
    assert message.startswith("runs/x/best.ckpt: its stored config sets DenseASPP head options of an earlier version")
    assert all(f"{key}: " in message for key in OLD_FLAGS if key in model["head"])
    assert "Pass --config with a current config" in message and "\n" not in message


# -- the command line and the published-weights cache ----------------------------------------------
def _predict(checkpoint: Path, image: Path, output: Path) -> int:
    return main(["predict", str(image), "--checkpoint", str(checkpoint), "--output", str(output), "--probabilities",
                 "--no-progress", "--device", "cpu", "--precision", "fp32"])


def test_cli_predict_with_an_old_checkpoint_equals_the_current_format(old_official, tmp_path):
    path, network = old_official
    current = tmp_path / "current.ckpt"
    save_old_checkpoint(network, load_config("denseaspp/denseaspp121_cityscapes"), current)  # same weights
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), np.uint8)).save(image)
    assert _predict(path, image, tmp_path / "old") == 0
    assert _predict(current, image, tmp_path / "new") == 0
    assert (tmp_path / "old" / "a_labels.png").read_bytes() == (tmp_path / "new" / "a_labels.png").read_bytes()
    old_probs, new_probs = np.load(tmp_path / "old" / "a_probs.npz"), np.load(tmp_path / "new" / "a_probs.npz")
    assert old_probs.files == new_probs.files and all(np.array_equal(old_probs[k], new_probs[k]) for k in old_probs.files)


def test_cli_refuses_a_non_migratable_checkpoint_in_one_line(tmp_path, capsys):
    model = {"num_classes": 3, "backbone": RESNET, "head": {**SMALL_HEAD, "preactivation": False}}
    path = save_old_checkpoint(old_network(model), old_config(model), tmp_path / "post.ckpt")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    assert _predict(path, image, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(path) in err and "preactivation: false" in err and "--config" in err


def test_old_format_file_in_the_published_weights_cache_loads(old_official, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(*args, **kwargs):
        raise AssertionError("the cached checkpoint is used as it is")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    path, network = old_official
    # Converted by an earlier version (the old DenseASPP121 config stands in for the 161's).
    cached = checkpoint_path(PUBLISHED_WEIGHTS["denseaspp161-cityscapes"])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(path.read_bytes())
    pretrained = load_pretrained("denseaspp161-cityscapes")
    assert pretrained.checkpoint == cached and cached.read_bytes() == path.read_bytes()
    assert pretrained.config["model"]["head"]["official"] is True
    x = torch.randn(1, 3, 32, 40, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(pretrained.model.double()(x), copy.deepcopy(network).double()(x))
