"""Heads: DenseASPP against an independent implementation of the official code's forward,
ASPP against torchvision's, cascaded-block rates, receptive fields and the segmentor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers_models import assert_identical, randomized_batchnorm
from torchvision.models.segmentation.deeplabv3 import ASPP as TorchvisionASPP

from atrous.config import ConfigError
from atrous.models import build_model
from atrous.models.heads import ASPPHead, CascadeHead, DenseASPPHead, FCNHead
from atrous.models.heads.cascade import cascade_plan
from atrous.models.receptive_field import ConvSpec, layer_receptive_field, stacked_receptive_field


def test_denseaspp_channel_arithmetic():
    """Report §4.2: c_l = c_0 + n·(l − 1); the output has c_0 + L·n channels."""
    head = DenseASPPHead(1024, (3, 6, 12, 18, 24), growth_channels=64, bottleneck_channels=256)
    assert [layer.norm1.num_features for layer in head.layers] == [1024 + 64 * i for i in range(5)]
    assert all(layer.conv1.out_channels == 256 for layer in head.layers)
    assert [layer.conv2.dilation[0] for layer in head.layers] == [3, 6, 12, 18, 24]
    assert head.out_channels == 1024 + 5 * 64
    y = head.eval()(torch.randn(1, 1024, 9, 11))
    assert y.shape == (1, 1344, 9, 11)


def test_denseaspp_input_first_keeps_input_channels():
    head = DenseASPPHead(32, (3, 6), growth_channels=8, bottleneck_channels=None).eval()
    x = torch.randn(2, 32, 10, 10)
    y = head(x)
    torch.testing.assert_close(y[:, :32], x)
    assert not hasattr(head.layers[0].conv1, "weight")  # no bottleneck (report Table 1 #1-#3)


def official_denseaspp_forward(head: DenseASPPHead, feature: torch.Tensor) -> torch.Tensor:
    """The official DenseASPP forward (models/DenseASPP.py), written out with functional ops.

    ``_DenseAsppBlock``: [norm.1] relu.1 conv.1 norm.2 relu.2 conv.2 (biases on), dropout; the
    first block has no norm.1 and its in-place ReLU rectifies ``feature`` itself; outputs are
    concatenated in front: ``torch.cat((aspp, feature), 1)``.
    """

    def bn(x, m):
        return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    for i, layer in enumerate(head.layers):
        if i == 0:
            feature = F.relu(feature)  # nn.ReLU(inplace=True) on the backbone output
            x = feature
        else:
            x = F.relu(bn(feature, layer.norm1))
        x = F.conv2d(x, layer.conv1.weight, layer.conv1.bias)
        x = F.relu(bn(x, layer.norm2))
        rate = head.atrous_rates[i]
        x = F.conv2d(x, layer.conv2.weight, layer.conv2.bias, padding=rate, dilation=rate)
        feature = torch.cat((x, feature), 1)
    return feature


def test_denseaspp_official_variant_matches_official_forward():
    head = DenseASPPHead(32, (3, 6, 12, 18, 24), bottleneck_channels=16, growth_channels=8, dropout=0.1, official=True)
    randomized_batchnorm(head)
    head.eval().double()
    assert head.layers[0].norm1.__class__.__name__ == "Identity"
    assert head.layers[1].norm1.momentum == 0.0003
    assert head.layers[0].conv1.bias is not None and head.layers[4].conv2.bias is not None
    # The official backbone's output is rectified (its relu5, the official first block's in-place ReLU).
    x = F.relu(torch.randn(2, 32, 13, 15, dtype=torch.float64))
    assert_identical(head(x), official_denseaspp_forward(head, x))  # the same layers: float64 rounding only
    assert torch.equal(head(x)[:, -32:], x)  # new features in front, the input last
    # The paper's layers: BN first, no biases, default momentum, the input first.
    paper = DenseASPPHead(32, (3, 6), bottleneck_channels=16, growth_channels=8).eval().double()
    layer = paper.layers[0]
    assert (layer.norm1.num_features, layer.norm1.momentum, layer.conv1.bias, layer.conv2.bias) == (32, 0.1, None, None)
    assert torch.equal(paper(x)[:, :32], x)


def test_denseaspp_output_norm():
    head = DenseASPPHead(16, (3, 6), growth_channels=4, bottleneck_channels=8, output_norm=True)
    assert head.layers[0].norm3.num_features == 4
    assert [layer.norm1.num_features for layer in head.layers] == [16, 20]


@pytest.mark.parametrize("key", ["preactivation", "first_input_norm", "input_relu", "conv_bias", "concat_order", "bn_momentum"])
def test_denseaspp_removed_options_name_their_replacement(key):
    cfg = {"num_classes": 3, "backbone": {"name": "resnet18"}, "head": {"name": "denseaspp", key: False}}
    with pytest.raises(ConfigError, match=rf"model\.head \(denseaspp\): '{key}' was removed: .*(official|pre-activation)"):
        build_model(cfg)
    old_official = {"first_input_norm": False, "input_relu": True, "conv_bias": True, "concat_order": "new_first",
                    "bn_momentum": 0.0003}
    cfg["head"] = {"name": "denseaspp", **old_official}
    with pytest.raises(ConfigError, match=r"were removed: use `official: true`.*; the backbone's `official_layout: true`"):
        build_model(cfg)


@pytest.mark.parametrize("rates", [(6, 12, 18), (12, 24, 36)])
def test_aspp_matches_torchvision(rates):
    ours = ASPPHead(64, rates, out_channels=32)
    ref = TorchvisionASPP(64, list(rates), out_channels=32)
    randomized_batchnorm(ours)
    ref.load_state_dict(ours.state_dict())
    ours.eval().double(), ref.eval().double()
    x = torch.randn(2, 64, 17, 19, dtype=torch.float64)
    assert_identical(ours(x), ref(x))  # the same layers: float64 rounding only


def test_aspp_ablations_and_rate_switch():
    plain = ASPPHead(64, (6, 12, 18, 24), out_channels=32, image_pooling=False)
    assert len(plain.convs) == 5 and plain.project[0].in_channels == 5 * 32
    assert stacked_receptive_field(plain.conv_path()) == 49 and not plain.global_context
    head = ASPPHead(64, (6, 12, 18), out_channels=32)
    head.set_rates((12, 24, 36))
    assert [b[0].dilation[0] for b in head.convs[1:4]] == [12, 24, 36]
    assert head.global_context
    no_bn = ASPPHead(64, (6,), pooling_norm=False)
    no_bn.train()(torch.randn(1, 64, 5, 5))  # batch of one trains without a BN on the 1x1 map


def test_cascade_plan_and_rates():
    """DeepLabv3 Fig. 3b: block4 rate 2, block5 4, block6 8, block7 16 at output stride 16."""
    assert cascade_plan(3, 16, 2, 16) == [(1, 4), (1, 8), (1, 16)]
    assert cascade_plan(3, 8, 4, 8) == [(1, 8), (1, 16), (1, 32)]
    assert cascade_plan(3, 32, 1, 64) == [(2, 1), (1, 2), (1, 4)]
    assert cascade_plan(3, 32, 1, 256) == [(2, 1), (2, 1), (2, 1)]
    with pytest.raises(ValueError, match="must be one of"):
        cascade_plan(1, 32, 1, 128)
    head = CascadeHead(256, num_blocks=3, output_stride=16, input_stride=16, input_dilation=2, multi_grid=(1, 2, 1))
    rates = [[unit.conv2.dilation[0] for unit in block] for block in head.blocks]
    assert rates == [[4, 8, 4], [8, 16, 8], [16, 32, 16]]
    assert head.extra_stride == 1


def test_cascade_striding_blocks_reduce_resolution():
    head = CascadeHead(256, num_blocks=2, output_stride=128, input_stride=32, input_dilation=1).eval()
    assert head.extra_stride == 4
    assert head(torch.randn(1, 256, 16, 12)).shape == (1, 256, 4, 3)


def test_receptive_field_formulas():
    assert layer_receptive_field(3, 1) == 3
    assert [layer_receptive_field(3, d) for d in (3, 6, 12, 18, 24)] == [7, 13, 25, 37, 49]
    assert stacked_receptive_field(ConvSpec(3, d) for d in (3, 6, 12, 18, 24)) == 127  # report R_max
    assert stacked_receptive_field(ConvSpec(3, d) for d in (3, 6, 9, 12, 18, 24)) == 145
    # Strides multiply later growth: 3x3 s2, 3x3 s2, 3x3 → 1 + 2 + 2·2 + 2·4 = 15.
    assert stacked_receptive_field([ConvSpec(3, 1, 2), ConvSpec(3, 1, 2), ConvSpec(3)]) == 15
    assert stacked_receptive_field(FCNHead(8).conv_path()) == 1


def _tiny_model(**extra):
    cfg = {
        "num_classes": 5,
        "backbone": {"name": "resnet18", "output_stride": 16},
        "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
    }
    cfg.update(extra)
    return build_model(cfg)


def test_segmentor_upsamples_logits_not_labels():
    model = _tiny_model(align_corners=True).eval().double()
    x = torch.randn(1, 3, 70, 90, dtype=torch.float64)
    with torch.no_grad():
        y, _ = model.forward_head_features(x)
        coarse = model.classifier(y)
        expected = F.interpolate(coarse, size=(70, 90), mode="bilinear", align_corners=True)
        assert_identical(model(x), expected)  # the same operations: float64 rounding only
    assert coarse.shape[-2:] == (5, 6)


def test_segmentor_feature_upsample_and_aux_head():
    model = _tiny_model(feature_upsample=2, aux_head={"feature": "layer3", "channels": 32}).train()
    assert model.output_stride == 8
    logits, aux = model.forward_with_aux(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 5, 64, 64)
    model.eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5, 64, 64)
    with pytest.raises(ValueError, match="aux_head.feature"):
        _tiny_model(aux_head={"feature": "layer9"})
    with pytest.raises(ValueError, match="feature_upsample"):
        _tiny_model(feature_upsample=3)


def test_model_output_stride_switch_keeps_weights_and_scales_aspp_rates():
    model = build_model(
        {"num_classes": 3, "backbone": {"name": "resnet18", "output_stride": 16},
         "head": {"name": "aspp", "atrous_rates": [6, 12, 18], "out_channels": 16}}
    ).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        coarse = model.forward_head_features(x)[0]
        model.set_output_stride(8)
        dense = model.forward_head_features(x)[0]
    assert model.output_stride == 8 and model.head.atrous_rates == (12, 24, 36)
    assert dense.shape[-2:] == (8, 8) and coarse.shape[-2:] == (4, 4)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="do not scale"):
        build_model({"num_classes": 3, "backbone": {"name": "resnet18", "output_stride": 8},
                     "head": {"name": "aspp", "atrous_rates": [3, 5]}}).set_output_stride(16)


def test_cascade_model_output_stride_switch():
    model = build_model(
        {"num_classes": 3, "backbone": {"name": "resnet50", "output_stride": 16, "multi_grid": [1, 2, 1]},
         "head": {"name": "cascade", "num_blocks": 1, "output_stride": 16, "multi_grid": [1, 2, 1]}}
    )
    model.set_output_stride(8)
    assert [u.conv2.dilation[0] for u in model.backbone.layer4] == [4, 8, 4]
    assert [u.conv2.dilation[0] for u in model.head.blocks[0]] == [8, 16, 8]
    model.set_output_stride(64)
    assert model.output_stride == 64 and model.head.extra_stride == 2
