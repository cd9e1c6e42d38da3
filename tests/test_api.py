"""The keyword API (atrous.create_model, list_models, list_encoders, model_config, save_config):
the same Segmentor as the config it prints, which saves and builds back."""

from __future__ import annotations

import pytest
import torch
import yaml

import atrous
from atrous.errors import ConfigError
from atrous.models.backbones.timm_families import VERIFIED

pytestmark = pytest.mark.usefixtures("one_thread")


def test_a_keyword_model_is_its_config(tmp_path):
    torch.manual_seed(0)
    model = atrous.create_model("deeplabv3plus", encoder="timm/convnext_atto", num_classes=5, output_stride=16,
                                in_channels=4)
    assert model.config == {"model": {
        "num_classes": 5, "in_channels": 4,
        "backbone": {"name": "timm/convnext_atto", "output_stride": 16, "pretrained": False},
        "head": {"name": "deeplabv3plus", "context": {"name": "aspp", "atrous_rates": [6, 12, 18]}}}}
    path = atrous.save_config(model.config, tmp_path / "model.yaml")
    assert yaml.safe_load(path.read_text()) == model.config
    again = atrous.build_model(path)
    again.load_state_dict(model.state_dict())  # the same modules, names and shapes
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize(("name", "output_stride", "head"), [
    ("deeplabv3", 8, {"name": "aspp", "atrous_rates": [12, 24, 36]}),
    ("denseaspp", 8, {"name": "denseaspp"}),
    ("denseaspp_plus", 16, {"name": "deeplabv3plus", "context": {"name": "denseaspp"}}),
    ("fcn", 32, {"name": "fcn"}),
])
def test_each_architecture(name, output_stride, head):
    cfg = atrous.model_config(name, encoder="resnet18", num_classes=3, output_stride=output_stride)
    assert cfg["model"]["head"] == head
    assert atrous.build_model(cfg).output_stride == output_stride


def test_lists_and_mistakes():
    assert atrous.list_models() == ["deeplabv3", "deeplabv3plus", "denseaspp", "denseaspp_plus", "fcn"]
    proven = atrous.list_encoders(dilatable=True)
    assert "resnet101" in proven and "densenet121" in proven
    both = {f"timm/{m}" for (m, os_) in VERIFIED if os_ == 8 and (m, 16) in VERIFIED}
    assert {p for p in proven if p.startswith("timm/")} == both and "timm/convnext_atto" in both
    assert "timm/nf_resnet26" in both and "timm/hrnet_w18_small" not in both
    everything = atrous.list_encoders()
    assert set(proven) <= set(everything) and "timm/convnext_atto" in everything
    with pytest.raises(ConfigError, match="unknown model 'unet'"):
        atrous.create_model("unet", num_classes=2)
