"""Configs, builder errors and the ``atrous`` command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.error
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
from torch import nn

from atrous import ConfigError, build_model, load_config
from atrous.cli import main
from atrous.config import CONFIG_ROOT, apply_overrides, list_configs
from atrous.models import Segmentor
from atrous.models.backbones import Backbone, FeatureInfo
from atrous.models.complexity import count_flops, count_parameters
from atrous.models.heads import FCNHead

REPO = Path(__file__).resolve().parents[1]

DEMO = CONFIG_ROOT / "demo" / "denseaspp_resnet18_small.yaml"
MODEL4 = CONFIG_ROOT / "denseaspp_report" / "table1_model4.yaml"


def small_model_cfg(**changes: object) -> dict:
    """A ResNet-18 + FCN model section, with top-level model keys replaced by ``changes``."""
    cfg = {
        "num_classes": 3,
        "backbone": {"name": "resnet18", "output_stride": 8, "pretrained": False},
        "head": {"name": "fcn"},
    }
    cfg.update(changes)
    return cfg


def write(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


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


# -- clear errors ---------------------------------------------------------------------------------


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


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# -- inputs the model cannot take ------------------------------------------------------------------


@pytest.fixture(scope="module")
def os8_model() -> Segmentor:
    return build_model(small_model_cfg()).eval()


def test_input_smaller_than_output_stride(os8_model):
    assert os8_model.output_stride == 8
    with pytest.raises(ValueError, match=r"input 4×4 is smaller than the model's output stride 8"):
        os8_model(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"output stride 8"):
        os8_model(torch.zeros(1, 3, 64, 7))
    with torch.no_grad():  # exactly the stride is fine
        assert os8_model(torch.zeros(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (3, 32, 32), (1, 4, 32, 32)])
def test_wrong_input_layout(os8_model, shape):
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got " + re.escape(str(shape))):
        os8_model(torch.zeros(shape))


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


# -- FLOPs against hand-computed numbers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("conv", "size", "expected"),
    [
        # 8 out × 3 in × 3·3 taps × 16·20 positions = 69,120 MACs
        (nn.Conv2d(3, 8, 3, padding=1), (16, 20), 2 * 69_120),
        # stride 2 on 17×20: output 9×10 → 8 × 3 × 9 × 90 = 19,440 MACs
        (nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), (17, 20), 2 * 19_440),
        # depthwise-ish, groups 3: 6 out × 1 in × 9 taps × 100 positions = 5,400 MACs
        (nn.Conv2d(3, 6, 3, padding=1, groups=3), (10, 10), 2 * 5_400),
    ],
)
def test_count_flops_single_conv(conv, size, expected):
    assert count_flops(conv, size) == expected
    assert count_flops(conv, size, batch=3) == 3 * expected


class PatchBackbone(Backbone):
    """One 8×8 stride-8 convolution: the simplest backbone at output stride 8."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=8, stride=8, bias=False)
        self.stage_strides = [8]
        self.feature_info = [FeatureInfo("patches", channels, 8)]
        self._last_dilation = 1

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        return OrderedDict(patches=self.conv(x))


def test_count_flops_tiny_segmentor_by_hand():
    model = Segmentor(PatchBackbone(16), FCNHead(16), num_classes=5)
    # 64×96 input → 8×12 features.
    # patch conv: 16 out × 3 in × 64 taps × 96 positions = 294,912 MACs
    # classifier: 5 out × 16 in × 96 positions           =   7,680 MACs
    # (bilinear upsampling, biases, BN, ReLU are not multiply-adds of a conv/matmul)
    assert count_flops(model, (64, 96)) == 2 * (294_912 + 7_680)


def _conv_flops_by_hooks(model: nn.Module, image_size: tuple[int, int]) -> int:
    """2 × MACs of every Conv2d, measured on real output shapes during a CPU forward pass."""
    total = 0

    def hook(module: nn.Conv2d, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *image_size))
    finally:
        for h in handles:
            h.remove()
    return total


# -- the command line ----------------------------------------------------------------------------


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
    by_hooks = _conv_flops_by_hooks(model, (64, 128))
    assert count_flops(model, (64, 128)) == by_hooks
    assert info["gflops"] == pytest.approx(by_hooks / 1e9, abs=5e-4)
    assert info["gmacs"] == pytest.approx(by_hooks / 2e9, abs=5e-4)
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
