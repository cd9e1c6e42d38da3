"""timm backbones (``timm/<model>``): declared = measured feature maps, dilated = strided on the
sampling grid for both dilation methods where they are exact, a misaligned method never used,
output-stride switching, weights (local files, the offline message, checkpoints never fetch)."""

from __future__ import annotations

import sys

import pytest
import timm
import torch

from atrous.errors import ConfigError, MissingExtraError
from atrous.models import build_model
from atrous.models.backbones import TimmBackbone, backbone_entry
from atrous.models.backbones import timm_backbone as tb
from atrous.models.backbones.grid_check import _GlobalOps, grid_agreement, probe_weights
from atrous.models.backbones.regrid import measure_geometry, regrid
from atrous.models.backbones.weights import PretrainedWeightsError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("model", ["convnext_atto", "resnet18d", "regnetx_002"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_declared_features_match_measured(model, output_stride):
    backbone = TimmBackbone(model, output_stride=output_stride).eval()
    with torch.no_grad():
        features = backbone(torch.zeros(1, 3, 64, 96))
    assert [f.name for f in backbone.feature_info] == list(features)
    for info, fmap in zip(backbone.feature_info, features.values(), strict=True):
        assert fmap.shape[1:] == (info.channels, 64 // info.stride, 96 // info.stride)
    assert backbone.output_stride == output_stride


def _dilated(model: str, method: str, output_stride: int):
    return tb.build_dilated(model, method, output_stride, 3, None, {"pretrained": False})


@pytest.mark.parametrize(("model", "output_stride"), [
    ("convnext_atto", 8), ("resnet18d", 8), ("tf_efficientnet_b0", 16),
    ("nf_resnet26", 8),  # weight-standardised convolutions: dilated in place, input padded by a pre-hook
])
def test_timm_misaligns_these_and_atrous_regridding_is_exact(model, output_stride):
    """ConvNeXt's 2×2 downsampling (timm centres its padding at rate 2), ResNet-D's average-pool
    shortcut and TensorFlow 'same' padding: timm's output_stride shifts the features off the grid
    (differences of the order of the features); atrous' per-side padding computes the strided
    network exactly — and the backbone picks atrous' method (NF-ResNet: timm misaligns its
    average-pool shortcut too)."""
    strided = _dilated(model, "timm", 32)
    assert grid_agreement(strided, _dilated(model, "timm", output_stride), output_stride).relative_difference > 1e-3
    exact = grid_agreement(strided, _dilated(model, "atrous", output_stride), output_stride)
    assert exact.verdict == "exact" and exact.relative_difference < 1e-12
    tb.choose_method.cache_clear()
    assert tb.choose_method(model, output_stride, 3, None) == "atrous"


def test_regridding_a_network_timm_cannot_dilate():
    with pytest.raises(AssertionError):
        _dilated("ghostnet_050", "timm", 8)
    strided = _dilated("ghostnet_050", "timm", 32)
    assert grid_agreement(strided, _dilated("ghostnet_050", "atrous", 8), 8).verdict == "exact"


def test_global_means_are_read_on_the_grid():
    """Squeeze-and-excitation averages the dense map over more pixels: compared as it is, the
    dilated network differs; with its global means read on the strided grid it is exact."""
    strided = _dilated("seresnet18", "timm", 32).double().eval()
    probe_weights(strided)
    dense = _dilated("seresnet18", "timm", 8).double().eval()
    dense.load_state_dict(strided.state_dict())
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad(), _GlobalOps() as record:
        coarse = strided(x)[-1]
    assert record.sizes  # the SE gates' means
    with torch.no_grad():
        plain = dense(x)[-1][..., ::4, ::4]
        with _GlobalOps(record.sizes):
            on_grid = dense(x)[-1][..., ::4, ::4]
    assert (plain - coarse).abs().max() > 1e-3 * coarse.abs().max()
    torch.testing.assert_close(on_grid, coarse, rtol=1e-12, atol=1e-12)


def test_regrid_keeps_every_parameter_name():
    net = _dilated("convnext_atto", "timm", 32)
    keys = list(net.state_dict())
    assert regrid(net, measure_geometry(net, 3), 8) > 0
    assert list(net.state_dict()) == keys


def test_output_stride_switch_keeps_weights_and_equals_a_fresh_build():
    torch.manual_seed(0)
    backbone = TimmBackbone("convnext_atto", output_stride=16).eval()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.set_output_stride(8)
    assert backbone.output_stride == 8 and backbone.method == "atrous"
    after = backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    fresh = TimmBackbone("convnext_atto", output_stride=8).eval()
    fresh.load_state_dict(before)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)["stages_3"], fresh(x)["stages_3"], rtol=0, atol=0)


def test_names_and_refusals_are_one_line():
    assert backbone_entry("timm/resnet18") == (TimmBackbone, {"model": "resnet18"})
    with pytest.raises(ConfigError, match="timm has no model 'resnet_nonexistent'"):
        build_model({"num_classes": 2, "backbone": {"name": "timm/resnet_nonexistent"}, "head": {"name": "fcn"}})
    with pytest.raises(ConfigError, match="HRNet keeps parallel branches"):
        TimmBackbone("hrnet_w18_small", output_stride=8)
    with pytest.raises(ConfigError, match="last feature map has stride 8, not 32"):
        TimmBackbone("regnetx_002", output_stride=32, out_indices=[1, 2])


def test_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if it were not installed
    with pytest.raises(MissingExtraError, match=r'a timm backbone needs timm: pip install "atrous\[timm\]"'):
        tb.import_timm()


def test_pretrained_from_a_local_file(tmp_path):
    source = timm.create_model("regnetx_002", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "regnetx_002.pth")
    backbone = TimmBackbone("regnetx_002", output_stride=32, pretrained=str(tmp_path / "regnetx_002.pth"))
    theirs = source.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in backbone.net.state_dict().items() if k in theirs)
    with pytest.raises(PretrainedWeightsError, match="no such file"):
        TimmBackbone("regnetx_002", pretrained=str(tmp_path / "missing.pth"))


def test_pretrained_from_the_cache_and_offline(tmp_path, monkeypatch):
    import huggingface_hub

    cached = tmp_path / "model.safetensors"
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: str(cached))
    assert tb._weights_overlay("resnet18", True)["pretrained_cfg_overlay"] == {"file": str(cached)}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, name: None)

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(PretrainedWeightsError) as err:
        TimmBackbone("resnet18", output_stride=32, pretrained=True)
    message = str(err.value)
    assert "\n" not in message and "https://huggingface.co/timm/resnet18.a1_in1k/resolve/main/model.safetensors" in message
    assert "pretrained: /path/to/model.safetensors" in message


def test_a_checkpoint_never_fetches_backbone_weights(monkeypatch):
    real = tb._weights_overlay

    def fetch(model, pretrained):
        assert pretrained is False, "asked for backbone weights"
        return real(model, pretrained)

    monkeypatch.setattr(tb, "_weights_overlay", fetch)
    cfg = {"num_classes": 3, "backbone": {"name": "timm/regnetx_002", "output_stride": 16, "pretrained": True},
           "head": {"name": "fcn"}}
    assert build_model(cfg, pretrained_backbone=False).output_stride == 16


def test_model_in_channels_adapts_a_timm_backbones_first_convolution():
    """``model.in_channels`` (the key every backbone family takes) rebuilds a timm network for
    other inputs: its first convolution is the 3-channel one adapted by timm's rule, every other
    weight unchanged; the keyword API uses the same key."""
    from atrous import create_model
    from atrous.models.backbones.base import adapt_input_conv

    torch.manual_seed(0)
    rgb = TimmBackbone("resnet18", output_stride=8)
    before = {k: v.clone() for k, v in rgb.state_dict().items()}
    rgb.set_in_channels(4)
    after = rgb.state_dict()
    assert rgb.in_channels == 4 and after.keys() == before.keys()
    first = next(k for k, v in before.items() if v.ndim == 4)
    torch.testing.assert_close(after[first], adapt_input_conv(4, before[first]), rtol=0, atol=0)
    assert all(torch.equal(after[k], before[k]) for k in before if k != first)
    assert rgb(torch.randn(1, 4, 64, 64))[rgb.feature_info[-1].name].shape[-2:] == (8, 8)
    model = create_model("deeplabv3plus", encoder="timm/resnet18", num_classes=5, in_channels=4).eval()
    assert model.config["model"]["in_channels"] == 4 and model(torch.randn(1, 4, 64, 64)).shape == (1, 5, 64, 64)
