"""DeepLabV3+ (ECCV 2018): the paper's ResNet-101 config against a hand count of every layer,
the decoder's skip at stride 4, output-stride switching, any context head on any backbone."""

from __future__ import annotations

import pytest
import torch
from torchvision import models

from atrous.config import load_config
from atrous.errors import ConfigError
from atrous.models import build_model
from atrous.models.complexity import count_parameters

pytestmark = pytest.mark.usefixtures("one_thread")


def conv(cin: int, cout: int, k: int = 1, bias: bool = False) -> int:
    return cin * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def test_paper_config_parameters_equal_a_hand_count():
    """ResNet-101 (torchvision's, without fc) + ASPP(6, 12, 18) with image pooling + decoder
    (1×1 → 48, two 3×3 convs of 256) + the 1×1 classifier, counted layer by layer."""
    cfg = load_config("deeplabv3plus/aspp_resnet101_os16", ["model.backbone.pretrained=false"])
    model = build_model(cfg)
    fc = models.resnet101().fc
    resnet = sum(p.numel() for p in models.resnet101().parameters()) - fc.weight.numel() - fc.bias.numel()
    aspp = (conv(2048, 256) + bn(256)) + 3 * (conv(2048, 256, 3) + bn(256)) + (conv(2048, 256) + bn(256))
    aspp += conv(5 * 256, 256) + bn(256)
    decoder = conv(256, 48) + bn(48) + conv(256 + 48, 256, 3) + bn(256) + conv(256, 256, 3) + bn(256)
    classifier = conv(256, 21, bias=True)
    expected = resnet + aspp + decoder + classifier
    assert count_parameters(model) == (expected, expected)
    assert cfg["reference"]["params_trainable"] == expected


def test_decoder_reads_layer1_and_logits_are_at_stride_4():
    cfg = load_config("deeplabv3plus/aspp_resnet101_os16", ["model.backbone.pretrained=false"])
    cfg["model"]["backbone"]["name"] = "resnet18"
    model = build_model(cfg).eval()
    assert model.low_level_feature == "layer1" and model.logit_stride == 4 and model.output_stride == 16
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        head, _ = model.forward_head_features(x)
        logits = model(x)
    assert head.shape == (1, 256, 16, 24) and logits.shape == (1, 21, 64, 96)
    assert model.head_receptive_field == 38
    model.set_output_stride(8)  # DeepLabV3+ Table 3: evaluate at 8
    assert model.head.context.atrous_rates == (12, 24, 36) and model.head_receptive_field == 75
    with torch.no_grad():
        assert model(x).shape == (1, 21, 64, 96)


def test_the_skip_changes_the_logits():
    """The low-level map is really used: perturbing only the decoder's reduction changes the output."""
    model = build_model({"num_classes": 3, "backbone": {"name": "resnet18", "output_stride": 16},
                         "head": {"name": "deeplabv3plus", "context": {"name": "denseaspp", "atrous_rates": [3, 6],
                                                                        "growth_channels": 8, "bottleneck_channels": 16}}}).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.head.reduce[0].weight.mul_(2)
        after = model(x)
    assert not torch.allclose(before, after)


def test_a_backbone_without_a_stride_4_map_and_bad_contexts_are_one_line():
    cfg = {"num_classes": 3, "backbone": {"name": "timm/resnet18", "output_stride": 32, "out_indices": [3, 4]},
           "head": {"name": "deeplabv3plus"}}
    with pytest.raises(ConfigError, match=r"needs a stride-4 feature map; this backbone's maps have strides \[16, 32\]"):
        build_model(cfg)
    cfg["backbone"] = {"name": "resnet18"}
    for context in ("deeplabv3plus", "cascade"):
        cfg["head"]["context"] = {"name": context}
        with pytest.raises(ConfigError, match=r"context.name must be one of \['aspp', 'denseaspp', 'fcn'\]"):
            build_model(cfg)


def test_parts_equal_smp_deeplabv3plus():
    """segmentation_models_pytorch's DeepLabV3Plus as an independent oracle, part by part: its
    encoder, ASPP (plain convolutions), 1×1 low-level reduction and segmentation head have the
    parameter counts of ours; it refines with one separable 3×3 conv where the paper's ResNet-101
    decoder (ours) has two plain ones, so those are counted by hand."""
    smp = pytest.importorskip("segmentation_models_pytorch")
    theirs = smp.DeepLabV3Plus("resnet101", encoder_weights=None, encoder_output_stride=16, classes=21,
                               decoder_atrous_rates=(6, 12, 18), decoder_aspp_separable=False)
    cfg = load_config("deeplabv3plus/aspp_resnet101_os16", ["model.backbone.pretrained=false"])
    ours = build_model(cfg)

    def n(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert n(ours.backbone) == n(theirs.encoder)
    assert n(ours.head.context) == n(theirs.decoder.aspp[0])
    assert n(ours.head.reduce) == n(theirs.decoder.block1)
    assert n(ours.classifier) == n(theirs.segmentation_head)
    assert n(ours.head.refine) == conv(304, 256, 3) + bn(256) + conv(256, 256, 3) + bn(256)
