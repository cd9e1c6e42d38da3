"""Config errors: unknown names and keys, bad values and files, malformed overrides — each a
:class:`~atrous.config.ConfigError` that names the place and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers_models import small_model_cfg

from atrous import ConfigError, build_model, load_config
from atrous.config import CONFIG_ROOT

DEMO = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_unknown_backbone_name_lists_valid_names():
    cfg = small_model_cfg(backbone={"name": "resnet19"})
    with pytest.raises(
        ConfigError, match=r"unknown name 'resnet19'; choose from \[.*'resnet18'.*\]"
    ) as info:
        build_model(cfg)
    for name in ("densenet121", "mobilenet_v3_large", "resnet50"):
        assert repr(name) in str(info.value)


def test_unknown_head_name_lists_valid_names():
    with pytest.raises(
        ConfigError, match=r"model\.head: unknown name 'psp'; choose from \[.*'denseaspp'.*\]"
    ):
        build_model(small_model_cfg(head={"name": "psp"}))


def test_backbone_without_name_is_an_error():
    with pytest.raises(ConfigError, match=r"model\.backbone: needs a mapping with a 'name' key"):
        build_model(small_model_cfg(backbone={"output_stride": 8}))


def test_unknown_backbone_key_lists_valid_keys():
    cfg = small_model_cfg(backbone={"name": "resnet18", "outputstride": 8})
    with pytest.raises(
        ConfigError, match=r"unknown key\(s\) \['outputstride'\]; valid keys: .*'output_stride'"
    ) as info:
        build_model(cfg)
    # the fixed ``arch`` argument is not a config key
    assert "'arch'" not in str(info.value)


def test_unknown_head_key_lists_valid_keys():
    cfg = small_model_cfg(head={"name": "denseaspp", "growth": 16})
    with pytest.raises(
        ConfigError,
        match=r"model\.head \(denseaspp\): unknown key\(s\) \['growth'\]; valid keys: .*'growth_channels'",
    ):
        build_model(cfg)


def test_unknown_model_key_lists_valid_keys():
    cfg = small_model_cfg(numclasses=3)
    with pytest.raises(
        ConfigError, match=r"model: unknown key\(s\) \['numclasses'\]; valid keys: .*'num_classes'"
    ):
        build_model(cfg)


def test_missing_model_key():
    cfg = small_model_cfg()
    del cfg["head"]
    with pytest.raises(ConfigError, match=r"missing required key 'head'"):
        build_model(cfg)


@pytest.mark.parametrize("output_stride", [12, 4, 64])
def test_bad_output_stride(output_stride):
    cfg = small_model_cfg(backbone={"name": "resnet18", "output_stride": output_stride})
    with pytest.raises(
        ConfigError, match=rf"output_stride must be one of \(8, 16, 32\), got {output_stride}"
    ):
        build_model(cfg)


def test_error_from_a_file_names_the_file(tmp_path):
    path = write(
        tmp_path, "model:\n  num_classes: 3\n  backbone: {name: resnet19}\n  head: {name: fcn}\n"
    )
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r": .*unknown name 'resnet19'"):
        build_model(path)


def test_missing_config_file_names_the_path(tmp_path):
    path = tmp_path / "nope" / "missing.yaml"
    with pytest.raises(ConfigError, match=re.escape(f"neither a file ({path}) nor the name of a config shipped")):
        load_config(path)
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        build_model(path)


def test_invalid_yaml(tmp_path):
    path = write(tmp_path, "model:\n  num_classes: [1, 2\n  head: {name: fcn}\n")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + r": not valid YAML"):
        load_config(path)


def test_config_must_be_a_mapping(tmp_path):
    path = write(tmp_path, "- model\n- head\n")
    with pytest.raises(ConfigError, match=r"a config must be a mapping with a 'model' section"):
        load_config(path)


def test_unknown_top_level_key(tmp_path):
    path = write(tmp_path, "modle:\n  num_classes: 3\n")
    with pytest.raises(
        ConfigError, match=r"unknown top-level key\(s\) \['modle'\]; allowed: \[.*'model'.*\]"
    ):
        load_config(path)


@pytest.mark.parametrize("override", ["model.num_classes", "=7"])
def test_malformed_override(override):
    with pytest.raises(
        ConfigError, match=re.escape(repr(override)) + r" must look like key\.path=value"
    ):
        load_config(DEMO, [override])


def test_override_through_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match=r"'num_classes' is not a section"):
        load_config(DEMO, ["model.num_classes.x=1"])


def test_config_errors_are_caught_as_value_errors():
    """``except ValueError`` in user code keeps catching a bad config (atrous.errors)."""
    with pytest.raises(ValueError, match=r"model\.num_classes: must be from 1 to 65535 .*, got 0") as info:
        build_model(load_config(DEMO, ["model.num_classes=0"]))
    assert isinstance(info.value, ConfigError)


def test_a_file_that_is_no_config_is_named_without_echoing_its_content(tmp_path):
    """``base: /etc/shadow`` (or any foreign YAML file): its keys may be secrets; none is printed."""
    secret = write(tmp_path, "root:*:20228:0:99999:7:::\nalice:$6$salt$hash:20228:0:99999:7:::\n")
    derived = tmp_path / "derived.yaml"
    derived.write_text(f"base: {secret}\n")
    with pytest.raises(ConfigError, match=r"not an atrous config: none of its 2 top-level key\(s\)") as err:
        load_config(derived)
    assert "20228" not in str(err.value) and "alice" not in str(err.value)


def test_precision_names_without_lightnings_private_type(monkeypatch):
    """The Trainer's precision names are read from a type Lightning does not export; without it,
    the names its Trainer documents are checked."""
    from atrous.training.train_section import DOCUMENTED_PRECISIONS, TrainConfig, lightning_choices

    assert set(DOCUMENTED_PRECISIONS) <= set(lightning_choices()["precision"])  # the documented names are Lightning's
    monkeypatch.delattr("lightning.fabric.plugins.precision.precision._PRECISION_INPUT")
    assert lightning_choices()["precision"] == ("auto", *DOCUMENTED_PRECISIONS)
    with pytest.raises(ConfigError, match="train.precision: unknown precision '17-mixed'"):
        TrainConfig.from_mapping({"precision": "17-mixed"})
    assert TrainConfig.from_mapping({"precision": "bf16-mixed"}).precision == "bf16-mixed"
