"""Backbones: declared feature maps vs measured ones, dilation layouts against torchvision and
against the strided network itself, multi-grid, output-stride switching and freezing."""

from __future__ import annotations

import pytest
import torch
from helpers_models import assert_identical
from torch import nn
from torchvision import models

from atrous.models.backbones import (
    BACKBONES,
    ConvNeXtBackbone,
    DenseNetBackbone,
    MobileNetV3Backbone,
    ResNetBackbone,
    plan_stages,
)
from atrous.models.build import build_backbone


def one_block_per_stage(net: nn.Module) -> nn.Module:
    """A ConvNeXt with only the first block of each stage (others are returned unchanged).

    PyTorch has no fast float64 CPU kernel for grouped convolutions (it loops over the channels),
    so the float64 ConvNeXt-Tiny is ~10x slower than in float32. Its 18 blocks repeat four
    configurations; one block per stage keeps every kind of layer — the stem, the three 2×2
    downsampling convs and a (dilated) 7×7 depthwise conv at each stage's rate — and the cost
    of float32."""
    if isinstance(net, ConvNeXtBackbone):
        for stage in (1, 3, 5, 7):
            net.features[stage] = net.features[stage][:1]
    return net


def feature_shapes(name: str, output_stride: int, device: str) -> tuple[nn.Module, list[dict[str, torch.Size]]]:
    """A backbone built on ``device`` and its feature map shapes for a 64×96 and a 65×97 image."""
    with torch.device(device):
        backbone = build_backbone({"name": name, "output_stride": output_stride}).eval()
        with torch.no_grad():
            shapes = [{k: v.shape for k, v in backbone(torch.randn(1, 3, h, w)).items()} for h, w in ((64, 96), (65, 97))]
    return backbone, shapes


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_declared_features_match_measured(name, output_stride):
    """Measured on the meta device: the shapes real kernels give (next test), without the compute."""
    backbone, (even, odd) = feature_shapes(name, output_stride, "meta")
    assert backbone.output_stride == output_stride
    assert list(even) == [f.name for f in backbone.feature_info]
    for info in backbone.feature_info:
        shape = even[info.name]
        assert shape[1] == info.channels, info
        assert (64 // shape[2], 96 // shape[3]) == (info.stride, info.stride), info
        h, w = odd[info.name][-2:]
        assert h in (65 // info.stride, -(-65 // info.stride)) and w in (97 // info.stride, -(-97 // info.stride))


@pytest.mark.parametrize("name", ["resnet18", "densenet121", "mobilenet_v3_large", "convnext_tiny"])
def test_meta_device_shapes_are_those_of_real_kernels(name):
    """One network per family, at the output stride that dilates most."""
    assert feature_shapes(name, 8, "meta")[1] == feature_shapes(name, 8, "cpu")[1]


def test_plan_stages_rule():
    assert [(p.stride, p.dilation) for p in plan_stages([4, 2, 2, 2], 8)] == [(4, 1), (2, 1), (1, 2), (1, 4)]
    assert [(p.stride, p.dilation) for p in plan_stages([4, 2, 2, 2], 16)] == [(4, 1), (2, 1), (2, 1), (1, 2)]
    assert [p.output_stride for p in plan_stages([2, 2, 2, 2, 2], 8)] == [2, 4, 8, 8, 8]
    with pytest.raises(ValueError, match="8, 16, 32"):
        plan_stages([4, 2, 2, 2], 12)


@pytest.mark.parametrize("output_stride,replace", [(8, [False, True, True]), (16, [False, False, True])])
def test_resnet_matches_torchvision_dilation(output_stride, replace):
    ours = ResNetBackbone("resnet50", output_stride=output_stride).eval().double()
    ref = models.resnet50(replace_stride_with_dilation=replace).eval().double()
    ref.load_state_dict(ours.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        y = ref.layer4(ref.layer3(ref.layer2(ref.layer1(ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))))))
        assert_identical(ours(x)["layer4"], y)  # the same network: float64 rounding only


@pytest.mark.parametrize(
    "backbone",
    [
        lambda os: ResNetBackbone("resnet18", output_stride=os),  # BasicBlock surgery
        lambda os: ResNetBackbone("resnet50", output_stride=os),
        lambda os: one_block_per_stage(ConvNeXtBackbone("convnext_tiny", output_stride=os)),  # 2x2 downsampling
    ],
    ids=["resnet18", "resnet50", "convnext_tiny"],
)
def test_dilated_network_equals_strided_network_on_its_grid(backbone):
    """Dilating instead of striding computes the same features, densely: the output-stride-8
    map sampled every 4 pixels is the output-stride-32 map (an independent check of every
    stride, dilation and padding, including ConvNeXt's even-kernel downsampling)."""
    net = backbone(32).eval().double()
    x = torch.randn(1, 3, 96, 128, dtype=torch.float64)  # a 3×4 grid at stride 32, 12×16 dense
    with torch.no_grad():
        coarse = next(reversed(net(x).values()))
        net.set_output_stride(8)
        dense = next(reversed(net(x).values()))
    assert dense.shape[-2:] == (12, 16)
    # identity: other kernels (dilated vs strided) sum the same products, float64 rounding only
    assert_identical(dense[..., ::4, ::4], coarse)


def test_convnext_symmetric_padding_would_break_alignment():
    """The test above can fail: centring the 2x2 kernel's padding shifts the features."""
    net = one_block_per_stage(ConvNeXtBackbone("convnext_tiny", output_stride=16)).eval().double()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        coarse = net.features[:7](x)
        net.set_output_stride(8)
        good = net.features[:7](x)
        down = net.features[6][1]
        down.right_pad = 0
        down.padding = (1, 1)  # symmetric 'same' padding of a kernel spanning 1 + dilation pixels
        shifted = net.features[:7](x)
    assert_identical(good[..., ::2, ::2], coarse)  # aligned padding: the same sums, float64 rounding only
    # misaligned padding reads other pixels: differences of the order of the features themselves
    assert not torch.allclose(shifted[..., ::2, ::2], coarse, atol=1e-3)


def test_mobilenet_output_stride_16_is_torchvision_dilated():
    ours = MobileNetV3Backbone(output_stride=16).eval().double()
    ref = models.mobilenet_v3_large(dilated=True).eval().double()
    ref.features.load_state_dict(ours.features.state_dict())
    x = torch.randn(1, 3, 96, 96, dtype=torch.float64)
    with torch.no_grad():
        assert_identical(ours(x)["stage5"], ref.features(x))  # the same network: float64 rounding only


def test_mobilenet_return_blocks_declares_and_returns_block_outputs():
    """torchvision's aux input, features[4]: 40 channels at stride 8, before stage3 ends."""
    for output_stride in (8, 16, 32):
        backbone = MobileNetV3Backbone(output_stride=output_stride, return_blocks=[4]).eval()
        names = [f.name for f in backbone.feature_info]
        assert names == ["stage1", "stage2", "block4", "stage3", "stage4", "stage5"]
        with torch.no_grad():
            features = backbone(torch.randn(1, 3, 64, 64))
        assert list(features) == names
        for info in backbone.feature_info:
            assert features[info.name].shape[1:] == (info.channels, 64 // info.stride, 64 // info.stride)
        assert backbone.feature_info[2] == type(backbone.feature_info[2])("block4", 40, 8)
    with pytest.raises(ValueError, match="return_blocks"):
        MobileNetV3Backbone(return_blocks=[16])


def test_densenet_output_stride_32_is_torchvision_features():
    ours = DenseNetBackbone("densenet121", output_stride=32).eval().double()
    ref = models.densenet121().eval().double()
    ref.features.load_state_dict(ours.features.state_dict())
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        assert_identical(ours(x)["block4"], ref.features(x))  # the same network: float64 rounding only


def test_densenet_dilation_as_in_the_paper():
    """DenseASPP §3: pools of transition2/3 removed, dense blocks 3 and 4 at rates 2 and 4."""
    net = DenseNetBackbone("densenet121", output_stride=8)
    f = net.features
    assert isinstance(f.transition1.pool, nn.AvgPool2d)
    assert isinstance(f.transition2.pool, nn.Identity) and isinstance(f.transition3.pool, nn.Identity)
    for block, rate in (("denseblock1", 1), ("denseblock2", 1), ("denseblock3", 2), ("denseblock4", 4)):
        for layer in getattr(f, block).values():
            assert layer.conv2.dilation == (rate, rate) and layer.conv2.padding == (rate, rate)


def test_densenet_cut_and_official_layout():
    two = DenseNetBackbone("densenet121", output_stride=8, num_blocks=2)
    assert (two.out_channels, two.output_stride) == (512, 8)
    assert not hasattr(two.features, "norm5") and not hasattr(two.features, "transition2")
    three = DenseNetBackbone("densenet121", output_stride=16, num_blocks=3)
    assert (three.out_channels, three.output_stride) == (1024, 16)
    official = DenseNetBackbone("densenet161", output_stride=8, official_layout=True)
    assert official.out_channels == 2208 // 2
    assert official.features.norm5.num_features == 1104
    assert isinstance(official.features.transition4.conv, nn.Conv2d)
    assert [n for n, _ in official.features.named_children()][-3:] == ["transition4", "norm5", "relu5"]
    with torch.no_grad():  # the official first ASPP block's in-place ReLU, on the backbone output
        assert (official.eval()(torch.randn(1, 3, 32, 32))["block4"] >= 0).all()
    with pytest.raises(ValueError, match="num_blocks"):
        DenseNetBackbone("densenet121", num_blocks=5)
    with pytest.raises(ValueError, match="official_layout"):
        DenseNetBackbone("densenet121", num_blocks=3, official_layout=True)


def test_resnet_cut_after_layer2_is_the_full_networks_prefix():
    """``num_stages=2`` keeps the stem, layer1 and layer2: the same computation as the full
    network's first two stages (128 channels at stride 8 for ResNet-18), nothing after them."""
    torch.manual_seed(0)
    full = ResNetBackbone("resnet18", output_stride=8).eval().double()
    cut = ResNetBackbone("resnet18", output_stride=8, num_stages=2).eval().double()
    assert not hasattr(cut, "layer3") and not hasattr(cut, "layer4")
    missing, unexpected = cut.load_state_dict(full.state_dict(), strict=False)
    assert not missing and all(k.startswith(("layer3.", "layer4.")) for k in unexpected)
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        out, reference = cut(x), full(x)
    assert list(out) == ["layer1", "layer2"]
    assert (cut.out_channels, cut.output_stride, tuple(out["layer2"].shape)) == (128, 8, (1, 128, 8, 12))
    assert_identical(out["layer2"], reference["layer2"])  # the same layers: float64 rounding only
    with pytest.raises(ValueError, match="num_stages"):
        ResNetBackbone("resnet18", num_stages=0)
    with pytest.raises(ValueError, match="multi_grid"):
        ResNetBackbone("resnet18", num_stages=3, multi_grid=(1, 2))


@pytest.mark.parametrize("output_stride,rates", [(32, (1, 2, 4)), (16, (2, 4, 8)), (8, (4, 8, 16))])
def test_multi_grid_unit_rates(output_stride, rates):
    """DeepLabv3 §3.2.1: Multi_Grid (1, 2, 4) at output stride 16 gives rates 2·(1, 2, 4)."""
    net = ResNetBackbone("resnet101", output_stride=output_stride, multi_grid=(1, 2, 4))
    assert tuple(unit.conv2.dilation[0] for unit in net.layer4) == rates
    assert net.last_dilation == rates[0]


def test_multi_grid_needs_one_rate_per_unit():
    with pytest.raises(ValueError, match="one positive unit rate per unit"):
        ResNetBackbone("resnet18", multi_grid=(1, 2, 4))  # resnet18's block4 has 2 units


@pytest.mark.parametrize("name", ["densenet121", "resnet18", "mobilenet_v3_large", "convnext_tiny"])
def test_output_stride_switch_keeps_weights(name):
    net = one_block_per_stage(build_backbone({"name": name, "output_stride": 16})).eval().double()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        before = next(reversed(net(x).values()))
        net.set_output_stride(8)
        dense = next(reversed(net(x).values()))
        net.set_output_stride(16)
        after = next(reversed(net(x).values()))
    assert dense.shape[-1] == 2 * before.shape[-1]
    assert_identical(after, before)  # the same network again: float64 rounding only
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics():
    net = DenseNetBackbone("densenet121", output_stride=8, frozen=True)
    net.train()
    assert not any(p.requires_grad for p in net.parameters())
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns)
    before = bns[0].running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(bns[0].running_mean, before)


def test_unfrozen_backbone_trains_batchnorm():
    net = ResNetBackbone("resnet18", output_stride=8).train()
    before = net.bn1.running_mean.clone()
    net(torch.randn(2, 3, 64, 64))
    assert not torch.equal(net.bn1.running_mean, before)
