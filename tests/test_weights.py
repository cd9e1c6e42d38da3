"""Pretrained weights: local files, torchvision's legacy DenseNet keys, the torch.hub cache, and
clear errors offline or for wrong files. Nothing here touches the network."""

from __future__ import annotations

import copy
import re
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from helpers_models import assert_identical
from torch import nn

from atrous.models.backbones import DenseNetBackbone, ResNetBackbone
from atrous.models.backbones.weights import (
    PretrainedWeightsError,
    build_pretrained,
    hub_checkpoint_path,
)

RESNET18_V1 = torchvision.models.ResNet18_Weights.IMAGENET1K_V1


def _randomize_bn_stats(model: nn.Module) -> nn.Module:
    """Non-default running statistics, so that a forgotten buffer shows up as a difference."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return model


def _assert_same_tensors(
    expected: dict[str, torch.Tensor], actual: dict[str, torch.Tensor]
) -> None:
    assert set(expected) == set(actual)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails loudly (the machine is offline anyway)."""

    def refuse(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(f"offline: refused download of {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case someone called torch.hub.set_dir
    return home


@pytest.fixture(scope="module")
def resnet18_tv() -> nn.Module:
    torch.manual_seed(123)
    return _randomize_bn_stats(torchvision.models.resnet18()).eval()


@pytest.fixture(scope="module")
def resnet18_file(resnet18_tv: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18-local.pth"
    sd = resnet18_tv.state_dict()
    assert any(k.startswith("fc.") for k in sd)  # the classifier travels with the file
    torch.save(sd, path)
    return path


# -- local files ------------------------------------------------------------------------------


def test_resnet18_local_file_loads_weights_and_reproduces_torchvision(resnet18_tv, resnet18_file):
    backbone = ResNetBackbone("resnet18", pretrained=resnet18_file, output_stride=32).eval()
    expected = {k: v for k, v in resnet18_tv.state_dict().items() if not k.startswith("fc.")}
    _assert_same_tensors(expected, backbone.state_dict())

    x = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        out = backbone.double()(x)["layer4"]
        tv = copy.deepcopy(resnet18_tv).double()  # the fixture stays float32 for the other tests
        ref = tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))
        ref = tv.layer4(tv.layer3(tv.layer2(tv.layer1(ref))))
    assert out.shape == (2, 512, 2, 2)
    assert_identical(out, ref)  # the same network and weights: float64 rounding only


def test_local_file_accepts_str_path_and_tilde(resnet18_tv, resnet18_file, monkeypatch):
    monkeypatch.setenv("HOME", str(resnet18_file.parent))
    for pretrained in (str(resnet18_file), f"~/{resnet18_file.name}"):
        net = build_pretrained(
            "resnet18", torchvision.models.resnet18, pretrained, ignore_prefixes=("fc.",)
        )
        assert torch.equal(net.conv1.weight, resnet18_tv.conv1.weight)


def test_pretrained_false_loads_nothing_not_even_the_hub_cache(torch_home, tmp_path, resnet18_tv):
    """``pretrained: false`` loads nothing, not even the hub cache's file: every tensor is
    torchvision's own initialisation from the same torch seed."""
    target = hub_checkpoint_path(RESNET18_V1)
    assert target.is_relative_to(tmp_path)
    target.parent.mkdir(parents=True)
    torch.save(resnet18_tv.state_dict(), target)
    torch.manual_seed(5)
    backbone = ResNetBackbone("resnet18", pretrained=False)
    torch.manual_seed(5)
    reference = torchvision.models.resnet18().state_dict()
    expected = {k: v for k, v in reference.items() if not k.startswith("fc.")}
    _assert_same_tensors(expected, backbone.state_dict())


def test_local_file_without_classifier_keys_loads(resnet18_tv, tmp_path):
    path = tmp_path / "headless.pth"
    torch.save({k: v for k, v in resnet18_tv.state_dict().items() if not k.startswith("fc.")}, path)
    backbone = ResNetBackbone("resnet18", pretrained=path, output_stride=8)
    assert torch.equal(backbone.layer4[1].conv2.weight, resnet18_tv.layer4[1].conv2.weight)
    # dilating the network afterwards does not touch the weights
    assert backbone.layer4[1].conv2.dilation == (4, 4)


# -- DenseNet: torchvision's published files use the legacy "norm.1" keys ---------------------

_NEW_KEY = re.compile(
    r"^(.*denselayer\d+\.)(norm|relu|conv)([12])\.(weight|bias|running_mean|running_var)$"
)


def _legacy_densenet_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The key layout of torchvision's densenet121-a639ec97.pth (2017: no num_batches_tracked)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        out[_NEW_KEY.sub(r"\1\2.\3.\4", key)] = value
    return out


@pytest.fixture(scope="module")
def densenet121_tv() -> nn.Module:
    torch.manual_seed(7)
    return _randomize_bn_stats(torchvision.models.densenet121()).eval()


def _expected_densenet_features(tv: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in tv.state_dict().items() if not k.endswith("num_batches_tracked")}


def test_densenet_legacy_keys_load(densenet121_tv, tmp_path):
    legacy = _legacy_densenet_state_dict(densenet121_tv)
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock4.denselayer16.conv.2.weight" in legacy
    assert not any(re.search(r"denselayer\d+\.(norm|conv)[12]\.", k) for k in legacy)
    path = tmp_path / "densenet121-legacy.pth"
    torch.save(legacy, path)

    backbone = DenseNetBackbone("densenet121", pretrained=path, output_stride=32)
    got = {k: v for k, v in backbone.state_dict().items() if not k.endswith("num_batches_tracked")}
    expected = {
        k: v
        for k, v in _expected_densenet_features(densenet121_tv).items()
        if not k.startswith("classifier.")
    }
    _assert_same_tensors(expected, got)


def test_densenet_wrapped_checkpoint_with_module_prefix_loads(densenet121_tv, tmp_path):
    sd = {f"module.{k}": v for k, v in densenet121_tv.state_dict().items()}
    path = tmp_path / "ddp-checkpoint.pth"
    torch.save({"state_dict": sd, "epoch": 3}, path)
    backbone = DenseNetBackbone("densenet121", pretrained=path, output_stride=32).eval()
    assert torch.equal(
        backbone.features.denseblock3.denselayer5.conv2.weight,
        densenet121_tv.features.denseblock3.denselayer5.conv2.weight,
    )
    assert torch.equal(
        backbone.features.norm5.running_var, densenet121_tv.features.norm5.running_var
    )
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():  # the same network and weights: float64 rounding only
        assert_identical(backbone.double()(x)["block4"], copy.deepcopy(densenet121_tv).double().features(x))


# -- torchvision weight enums through torch.hub's cache ----------------------------------------


def test_hub_checkpoint_path_follows_torch_home(torch_home):
    target = hub_checkpoint_path(RESNET18_V1)
    assert target == torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert target.name == Path(RESNET18_V1.url).name


def test_pretrained_true_uses_cached_hub_file(torch_home, tmp_path, resnet18_tv):
    target = hub_checkpoint_path(RESNET18_V1)
    assert target.is_relative_to(tmp_path)
    target.parent.mkdir(parents=True)
    torch.save(resnet18_tv.state_dict(), target)

    for pretrained in (True, "IMAGENET1K_V1", "DEFAULT"):
        backbone = ResNetBackbone("resnet18", pretrained=pretrained, output_stride=32)
        assert torch.equal(backbone.conv1.weight, resnet18_tv.conv1.weight), pretrained
        assert torch.equal(
            backbone.layer3[0].bn2.running_mean, resnet18_tv.layer3[0].bn2.running_mean
        )


def test_pretrained_true_offline_names_url_and_target(torch_home, tmp_path, monkeypatch):
    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    target = hub_checkpoint_path(RESNET18_V1)
    assert target.is_relative_to(tmp_path)

    with pytest.raises(PretrainedWeightsError) as info:
        ResNetBackbone("resnet18", pretrained=True)
    msg = str(info.value)
    assert RESNET18_V1.url in msg
    assert str(target) in msg
    assert "offline" in msg
    assert "ResNet18_Weights.IMAGENET1K_V1" in msg
    assert f"pretrained: /path/to/{target.name}" in msg
    assert isinstance(info.value.__cause__, urllib.error.URLError)
    assert not target.exists()


def test_pretrained_enum_name_offline_for_densenet(torch_home):
    weights = torchvision.models.DenseNet121_Weights.IMAGENET1K_V1
    with pytest.raises(PretrainedWeightsError, match=re.escape(str(hub_checkpoint_path(weights)))):
        DenseNetBackbone("densenet121", pretrained="IMAGENET1K_V1")


# -- wrong files, wrong names ------------------------------------------------------------------


def test_other_architecture_file_is_refused(tmp_path):
    path = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match=re.escape(str(path))) as info:
        ResNetBackbone("resnet18", pretrained=path)
    assert "resnet18" in str(info.value)


def test_file_with_missing_keys_is_refused(resnet18_tv, tmp_path):
    sd = {k: v for k, v in resnet18_tv.state_dict().items() if not k.startswith("layer4.")}
    path = tmp_path / "truncated.pth"
    torch.save(sd, path)
    with pytest.raises(PretrainedWeightsError, match=r"missing keys .*layer4\."):
        ResNetBackbone("resnet18", pretrained=path)


def test_file_with_extra_keys_is_refused(resnet18_tv, tmp_path):
    sd = dict(resnet18_tv.state_dict())
    sd["decoder.weight"] = torch.zeros(3)
    path = tmp_path / "extra.pth"
    torch.save(sd, path)
    with pytest.raises(PretrainedWeightsError, match=r"1 unexpected keys .*decoder\.weight"):
        ResNetBackbone("resnet18", pretrained=path)


def test_non_state_dict_file_is_refused(tmp_path):
    path = tmp_path / "numbers.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(PretrainedWeightsError, match=r"not a state dict") as info:
        ResNetBackbone("resnet18", pretrained=path)
    assert str(path) in str(info.value)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match=r"cannot be read as a PyTorch state dict"):
        ResNetBackbone("resnet18", pretrained=path)


@pytest.mark.parametrize("pretrained", ["IMAGENET1K_V9", "/nonexistent/resnet18.pth"])
def test_unknown_name_or_missing_file_lists_valid_names(pretrained):
    with pytest.raises(PretrainedWeightsError) as info:
        ResNetBackbone("resnet18", pretrained=pretrained)
    msg = str(info.value)
    assert repr(pretrained) in msg
    assert "ResNet18_Weights" in msg
    assert "IMAGENET1K_V1" in msg and "DEFAULT" in msg
    assert "nor an existing file" in msg


# -- safety: local files are loaded with weights_only=True ---------------------------------------

EXECUTED: list[str] = []


def _side_effect(tag: str) -> str:
    EXECUTED.append(tag)
    return tag


class _Payload:
    """Unpickling this object calls ``_side_effect`` — it must never happen."""

    def __reduce__(self):
        return (_side_effect, ("payload ran",))


def test_pickled_code_is_refused_not_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": _Payload()}, path)
    EXECUTED.clear()
    with pytest.raises(PretrainedWeightsError, match=r"cannot be read as a PyTorch state dict"):
        ResNetBackbone("resnet18", pretrained=path)
    assert EXECUTED == []
    # control: the payload does run when unpickled without weights_only
    torch.load(path, weights_only=False)
    assert EXECUTED == ["payload ran"]


def test_pickled_code_in_the_hub_cache_is_refused_not_executed(torch_home):
    """The enum path reads torch.hub's cached file with weights_only=True too."""
    target = hub_checkpoint_path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": torch.zeros(1), "extra": _Payload()}, target)
    EXECUTED.clear()
    with pytest.raises(PretrainedWeightsError, match="cached torchvision weights .* cannot be loaded"):
        ResNetBackbone("resnet18", pretrained=True)
    assert EXECUTED == []


def test_legacy_densenet_keys_with_batch_counters_load(densenet121_tv, tmp_path):
    """Checkpoints saved by PyTorch >= 0.4.1 from modules named `norm.1` carry num_batches_tracked."""
    state = {}
    for key, value in densenet121_tv.state_dict().items():
        state[_NEW_KEY.sub(r"\1\2.\3.\4", key).replace("norm1.num_batches", "norm.1.num_batches")
              .replace("norm2.num_batches", "norm.2.num_batches")] = value
    assert any(k.endswith("norm.1.num_batches_tracked") for k in state)
    path = tmp_path / "legacy_counters.pth"
    torch.save(state, path)
    net = DenseNetBackbone("densenet121", pretrained=path, output_stride=32)
    _assert_same_tensors(net.features.state_dict(), densenet121_tv.features.state_dict())
