"""Loading configs: building from a path, a config or its model mapping, dotted overrides,
``base:`` configs, and packaged names that resolve from any folder."""

from __future__ import annotations

import json

import pytest

from atrous import ConfigError, build_model, load_config
from atrous.cli import main
from atrous.config import CONFIG_ROOT, apply_overrides, list_configs
from atrous.models.complexity import count_parameters

DEMO = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"


# -- building from a path, a full config or the model mapping ----------------------------------


def test_build_model_from_path_dict_and_model_mapping_agree():
    cfg = load_config(DEMO)
    from_path = build_model(DEMO)
    from_str = build_model(str(DEMO))
    from_full = build_model(cfg)
    from_model = build_model(cfg["model"])
    counts = {count_parameters(m) for m in (from_path, from_str, from_full, from_model)}
    assert len(counts) == 1
    total, trainable = counts.pop()
    assert total == trainable > 11_000_000  # ResNet-18 trunk (~11.2M) + head, nothing frozen
    assert from_path.num_classes == 19 and from_path.output_stride == 8
    assert from_model.classifier.out_channels == 19


def test_build_model_does_not_mutate_its_config():
    cfg = load_config(DEMO)
    before = json.dumps(cfg, sort_keys=True)
    build_model(cfg)
    assert json.dumps(cfg, sort_keys=True) == before


# -- overrides -----------------------------------------------------------------------------------


def test_overrides_change_values_and_the_built_model():
    cfg = load_config(DEMO, ["model.num_classes=7", "model.head.growth_channels=16"])
    assert cfg["model"]["num_classes"] == 7 and isinstance(cfg["model"]["num_classes"], int)
    assert cfg["model"]["head"]["growth_channels"] == 16
    assert cfg["model"]["head"]["bottleneck_channels"] == 64  # siblings untouched
    model = build_model(cfg)
    assert model.classifier.out_channels == 7
    assert all(layer.conv2.out_channels == 16 for layer in model.head.layers)
    assert model.head.out_channels == 512 + 5 * 16
    # the file itself is unchanged
    assert load_config(DEMO)["model"]["num_classes"] == 19


def test_apply_overrides_leaves_the_input_untouched():
    cfg = load_config(DEMO)
    new = apply_overrides(cfg, ["model.num_classes=7", "model.head.growth_channels=16"])
    assert new["model"]["num_classes"] == 7 and new["model"]["head"]["growth_channels"] == 16
    assert cfg["model"]["num_classes"] == 19 and cfg["model"]["head"]["growth_channels"] == 32


def test_override_values_are_parsed_as_yaml():
    cfg = load_config(
        DEMO,
        [
            "model.head.atrous_rates=[1, 2]",
            "model.backbone.pretrained=false",
            "model.align_corners=true",
            "evaluate.note=hello",
        ],
    )
    assert cfg["model"]["head"]["atrous_rates"] == [1, 2]
    assert cfg["model"]["backbone"]["pretrained"] is False
    assert cfg["model"]["align_corners"] is True
    assert cfg["evaluate"] == {"note": "hello"}  # new sections are created


# -- base configs ------------------------------------------------------------------------------


def test_base_configs_merge_and_switch_components(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "model:\n  num_classes: 5\n  backbone: {name: resnet18, output_stride: 16}\n"
        "  head: {name: denseaspp, atrous_rates: [3, 6], growth_channels: 8}\n"
        "train: {max_epochs: 3, optimizer: {name: adam, lr: 0.001}}\nreference: {source: base}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "base: base.yaml\nmodel:\n  backbone: {output_stride: 8}\n  head: {name: fcn}\n"
        "train: {optimizer: {lr: 0.01}}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg["model"]["backbone"] == {"name": "resnet18", "output_stride": 8}
    assert cfg["model"]["head"] == {"name": "fcn"}  # another component replaces wholesale
    assert cfg["train"] == {"max_epochs": 3, "optimizer": {"name": "adam", "lr": 0.01}}
    assert "reference" not in cfg
    build_model(cfg)
    (tmp_path / "child2.yaml").write_text("base: base.yaml\nreference: {note: own}\n")
    assert load_config(tmp_path / "child2.yaml")["reference"] == {"note": "own"}  # replaced, not merged
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "loop.yaml")


def test_null_removes_an_inherited_key_in_a_derived_file_and_an_override(tmp_path):
    """``key: null`` over a base, and ``key=null`` on the command line, remove the key, so that
    its default applies; the demo's synthetic-data ``length`` goes away for a folder dataset."""
    (tmp_path / "child.yaml").write_text(
        "base: demo/denseaspp_resnet18_small\n"
        "data:\n  dataset: {name: folder, root: data}\n  train: {length: null}\n  val: {length: null}\n"
        "train: {optimizer: {weight_decay: null}}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    demo = load_config(DEMO)
    assert cfg["data"]["dataset"] == {"name": "folder", "root": "data"}  # another dataset: replaced wholesale
    assert cfg["data"]["train"] == {k: v for k, v in demo["data"]["train"].items() if k != "length"}
    assert cfg["data"]["val"] == {"split": "val"}
    assert cfg["train"]["optimizer"] == {"name": "adam", "lr": 0.002}
    assert cfg["model"] == demo["model"]

    new = apply_overrides(demo, ["data.train.length=null", "data.val=null", "train.optimizer.lr=~"])
    assert "length" not in new["data"]["train"] and "val" not in new["data"]
    assert new["train"]["optimizer"] == {"name": "adam", "weight_decay": 1.0e-5}
    # Removing what is not there is no error and creates nothing.
    assert apply_overrides(demo, ["model.aux_head=null", "evaluate.scales=null"]) == demo


def test_null_still_sets_the_keys_where_null_is_a_value(tmp_path):
    """``bottleneck_channels: null`` (no 1×1 bottleneck) and ``max_epochs: null`` (no epoch limit)
    differ from their defaults (256, 60): null sets them, over a base and on the command line."""
    (tmp_path / "child.yaml").write_text(
        "base: denseaspp_report/table1_model4\nmodel:\n  head: {bottleneck_channels: null}\n"
        "train: {max_epochs: null, max_steps: 10}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg["model"]["head"]["bottleneck_channels"] is None and cfg["train"]["max_epochs"] is None
    with_bottleneck = build_model(load_config("denseaspp_report/table1_model4", ["model.backbone.pretrained=false"]))
    model = build_model(cfg, pretrained_backbone=False)
    assert not model.head.layers[0].has_bottleneck and with_bottleneck.head.layers[0].has_bottleneck
    by_override = load_config("denseaspp_report/table1_model4", ["model.head.bottleneck_channels=null"])
    assert by_override["model"]["head"]["bottleneck_channels"] is None


# -- configs are package data: names resolve from any folder ---------------------------------
def test_packaged_config_names_resolve_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the checkout
    by_name = load_config("denseaspp_report/table1_model4")
    assert load_config("denseaspp_report/table1_model4.yaml") == by_name
    assert load_config(CONFIG_ROOT / "denseaspp_report" / "table1_model4.yaml") == by_name
    assert count_parameters(build_model(load_config("denseaspp_report/table1_model4", ["model.backbone.pretrained=false"])))[1] == 2_252_820


def test_a_renamed_config_name_fails_with_the_new_one(tmp_path, monkeypatch):
    """``seed/`` (the DenseASPP report's configs) is now ``denseaspp_report/``: the old name
    is an error that names the new one, also as a ``base``."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"'seed/table1_model4' .*did you mean 'denseaspp_report/table1_model4'\?"):
        load_config("seed/table1_model4")
    (tmp_path / "old.yaml").write_text("base: seed/table2_convnext.yaml\n")
    with pytest.raises(ConfigError, match=r"old.yaml: base config .*did you mean 'denseaspp_report/table2_convnext'\?"):
        load_config(tmp_path / "old.yaml")
    with pytest.raises(ConfigError) as unknown:  # no such report config: no hint
        load_config("seed/table9_model9")
    assert "did you mean" not in str(unknown.value)


def test_a_file_on_disk_wins_over_a_packaged_name(tmp_path, monkeypatch):
    (tmp_path / "denseaspp_report").mkdir()
    (tmp_path / "denseaspp_report" / "table1_model4.yaml").write_text(
        "model:\n  num_classes: 3\n  backbone: {name: resnet18}\n  head: {name: fcn}\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("denseaspp_report/table1_model4.yaml")["model"]["num_classes"] == 3
    assert load_config("denseaspp_report/table1_model4")["model"]["num_classes"] == 20  # no such file: the packaged one


def test_a_user_config_may_base_a_packaged_one_by_name(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: denseaspp_report/table1_model4\nmodel:\n  num_classes: 7\n")
    cfg = load_config(mine)
    assert cfg["model"]["num_classes"] == 7
    assert cfg["model"]["head"] == load_config("denseaspp_report/table1_model4")["model"]["head"]
    (tmp_path / "bad.yaml").write_text("base: denseaspp_report/no_such_config\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: base config 'denseaspp_report/no_such_config' is neither"):
        load_config(tmp_path / "bad.yaml")


def test_an_empty_zoo_is_an_error_not_an_empty_table(tmp_path, monkeypatch, capsys):
    import atrous.config

    with pytest.raises(ConfigError, match="lacks its package data"):
        list_configs(tmp_path)
    monkeypatch.setattr(atrous.config, "CONFIG_ROOT", tmp_path / "missing")
    monkeypatch.setattr(list_configs, "__defaults__", (tmp_path / "missing",))
    assert main(["zoo"]) == 2
    assert "lacks its package data" in capsys.readouterr().err
