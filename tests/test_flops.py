"""FLOP counting (:func:`atrous.models.complexity.count_flops`) against hand-computed numbers
and against every convolution's multiply-adds measured on real output shapes."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from torch import nn

from atrous import build_model, load_config
from atrous.config import CONFIG_ROOT
from atrous.models import Segmentor
from atrous.models.backbones import Backbone, FeatureInfo
from atrous.models.complexity import count_flops
from atrous.models.heads import FCNHead

MODEL4 = CONFIG_ROOT / "denseaspp_report" / "table1_model4.yaml"


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


def conv_flops_by_hooks(model: nn.Module, image_size: tuple[int, int]) -> int:
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


def test_count_flops_of_model4_equals_every_conv_by_hooks():
    model = build_model(load_config(MODEL4, ["model.backbone.pretrained=false"]))  # no download
    assert count_flops(model, (64, 128)) == conv_flops_by_hooks(model, (64, 128)) > 1e8
