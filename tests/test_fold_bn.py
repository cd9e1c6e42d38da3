"""BatchNorm folding: the folded model computes the original function with fewer BatchNorms,
exactly the conv → BN pairs fold (ResNet, DenseNet, DenseASPP, ASPP), and training mode is refused."""

from __future__ import annotations

import pytest
import torch
from helpers_models import assert_identical, randomized_batchnorm
from torch import nn

from atrous.config import CONFIG_ROOT, load_config
from atrous.engines.batchnorm import count_batchnorms, fold_batchnorm, plan_batchnorm_folding
from atrous.models import build_model
from atrous.models.complexity import count_parameters

# config (+ overrides) → (folded, kept) BatchNorm counts, derived from the architecture:
CASES = {
    # ResNet-18: stem + 2 per BasicBlock × 8 + 3 downsample = 20; DenseASPP: each layer's norm2
    # (after conv1) folds, its norm1 normalises the input/concatenation and stays.
    "demo/denseaspp_resnet18_small.yaml": ((), 25, 5),
    # DenseNet-121: norm0 + 58 dense layers' norm2 + norm5 (after the official transition4 conv)
    # + 5 head norm2 = 65 fold; 58 norm1 + 4 transition norms + 4 head norm1 (after concats) stay.
    "denseaspp/denseaspp121_cityscapes.yaml": ((), 65, 66),
    # ResNet-50 bottlenecks (53) + ASPP: 4 branches, image pooling, projection, refine = 60, all fold.
    "torchvision/deeplabv3_resnet50.yaml": (("model.aux_head=null",), 60, 0),
    # ResNet-18 (20) + ASPP with image pooling (6).
    "experiments/synthetic_context/aspp.yaml": ((), 26, 0),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list(CASES))
def test_folded_model_equals_original_with_fewer_batchnorms(name):
    overrides, folded_count, kept_count = CASES[name]
    model = randomized_batchnorm(build_model(load_config(CONFIG_ROOT / name, [*overrides, "model.backbone.pretrained=false"])))
    model.double()
    plan = plan_batchnorm_folding(model)
    assert (len(plan.pairs), len(plan.kept)) == (folded_count, kept_count), plan.summary()
    folded = fold_batchnorm(model, plan=plan)

    assert count_batchnorms(folded) == kept_count < count_batchnorms(model) == folded_count + kept_count
    # Parameters: each folded BN loses γ, β (2C); a conv without bias gains one (C).
    modules = dict(model.named_modules())
    expected = count_parameters(model)[0] - sum(
        2 * modules[bn].num_features - (modules[conv].bias is None) * modules[conv].out_channels
        for conv, bn in plan.pairs
    )
    assert count_parameters(folded)[0] == expected

    x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        reference, actual = model(x), folded(x)
    # identity: folding re-associates each BN's affine map into the conv, float64 rounding only
    assert_identical(actual, reference)
    assert count_batchnorms(model) == folded_count + kept_count, "the original is left untouched"


def test_only_batchnorms_fed_solely_by_a_convolution_fold():
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.shared = nn.Conv2d(3, 4, 3, padding=1)
            self.bn_shared = nn.BatchNorm2d(4)
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn_reread = nn.BatchNorm2d(4)
            self.conv_ok = nn.Conv2d(4, 4, 1, bias=False)
            self.bn_ok = nn.BatchNorm2d(4)
            self.bn_unused = nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = self.bn_shared(self.shared(x)) + self.shared(x)  # conv called twice
            y = self.conv(x)
            b = self.bn_reread(y) + y  # conv output also read by the residual
            return self.bn_ok(self.conv_ok(a + b))

    net = randomized_batchnorm(Net()).double()
    plan = plan_batchnorm_folding(net, torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    assert plan.pairs == [("conv_ok", "bn_ok")]
    assert plan.kept == {
        "bn_shared": "its convolution is called more than once",
        "bn_reread": "its convolution's output is also read elsewhere",
        "bn_unused": "not called by forward",
    }
    folded = fold_batchnorm(net, torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    assert isinstance(folded.bn_ok, nn.Identity) and folded.conv_ok.bias is not None
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        assert_identical(folded(x), net(x))  # one BN folded, the rest kept: float64 rounding only


def test_training_mode_is_refused():
    model = build_model(load_config(CONFIG_ROOT / "demo/denseaspp_resnet18_small.yaml"))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model.train())
    model.eval()
    model.head.layers[0].norm2.train()  # one BatchNorm left in training mode
    with pytest.raises(ValueError, match=r"head\.layers\.0\.norm2"):
        fold_batchnorm(model)
