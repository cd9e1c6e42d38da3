"""One shared model test over every config of the zoo (configs/**/*.yaml).

For each: the logits have the input's size for odd and even sizes; the declared output stride
equals the measured one; every trainable parameter gets a finite gradient; no NaNs; eval mode
is deterministic; ``torch.export`` reproduces eager outputs; the numbers a paper reports for
the config (``reference:``) are met exactly (on the meta device), and every config declares its
head's receptive field, which for a set of heads is also measured independently of
``conv_path()``. Forward, backward and export run once per structure (backbone, head, output
stride; a backbone family counts once) in the fast tier and for every config in the ``slow`` tier.
"""

from __future__ import annotations

import pytest
import torch
from helpers_models import measured_receptive_field
from helpers_zoo import ZOO, ZOO_IDS, ZOO_ONCE_PER_STRUCTURE

from atrous.config import load_config
from atrous.data.build import DATA_KEYS, dataset_arguments
from atrous.data.transforms import transforms_from_config
from atrous.models import build_model
from atrous.models.complexity import count_parameters
from atrous.training.train_section import TrainConfig


def _sizes(output_stride: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """An even size that is a multiple of the stride, and an odd size."""
    unit = max(output_stride, 32)
    even = (2 * unit, 3 * unit) if output_stride <= 32 else (unit, 2 * unit)
    return even, (even[0] + 1, even[1] - 31)


@pytest.fixture(scope="module", params=ZOO_ONCE_PER_STRUCTURE)
def zoo_entry(request):
    """Forward, backward and export run once per structure in the fast tier (the slow tier: all)."""
    cfg = load_config(request.param, ["model.backbone.pretrained=false"])  # architecture only
    return cfg, build_model(cfg)


@pytest.mark.parametrize("path", ZOO, ids=ZOO_IDS)
def test_reference_numbers(path):
    cfg = load_config(path, ["model.backbone.pretrained=false"])
    with torch.device("meta"):  # counts and receptive fields need no memory (meta builds = real ones: test_startup)
        model = build_model(cfg)
    ref = cfg.get("reference") or {}
    assert ref.get("source"), "every zoo config names what it reproduces"
    _, trainable = count_parameters(model)
    if "params_trainable" in ref:
        assert trainable == ref["params_trainable"]
    assert "receptive_field" in ref, "every zoo config declares its head's receptive field"
    assert model.head_receptive_field == ref["receptive_field"]


# ResNet-50/101 at output stride 16 and 8 (ASPP, the torchvision head's extra 3×3), a cascade
# with strides and one with multi-grid inside the head, and DenseASPP: the declared field is the
# measured gradient support (the whole zoo agrees; these keep the run short, ~25 s).
MEASURED = [
    "deeplabv3/aspp_resnet50_os16", "deeplabv3/aspp_resnet50_os8", "deeplabv3/aspp_resnet101_os16",
    "deeplabv3/aspp_resnet101_os8", "torchvision/deeplabv3_resnet50",
    "deeplabv3/table1/cascade_resnet50_block7_os256", "deeplabv3/cascade_resnet101_block5_aspp_os16",
    "denseaspp_report/table1_model4",
]


@pytest.mark.parametrize("name", MEASURED)
def test_declared_receptive_field_is_the_measured_one(name):
    cfg = load_config(name, ["model.backbone.pretrained=false"])
    head = build_model(cfg).head
    declared = cfg["reference"]["receptive_field"]
    assert measured_receptive_field(head, head.in_channels, bound=declared) == declared


def test_shapes_strides_gradients_determinism_export(zoo_entry):
    cfg, model = zoo_entry
    num_classes = cfg["model"]["num_classes"]
    even, odd = _sizes(model.output_stride)

    # Training step: shapes for odd and even sizes, gradients everywhere, no NaNs.
    model.train()
    for size in (even, odd):
        x = torch.randn(2, 3, *size)
        logits, aux = model.forward_with_aux(x)
        assert logits.shape == (2, num_classes, *size)
        assert torch.isfinite(logits).all()
        model.zero_grad(set_to_none=True)
        loss = logits.logsumexp(1).mean() + (aux.logsumexp(1).mean() if aux is not None else 0)
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without gradient: {missing[:5]}"
        bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
        assert not bad, f"non-finite gradients: {bad[:5]}"

    # Measured stride of the head output equals the declared output stride.
    model.eval()
    x = torch.randn(1, 3, *even)
    with torch.no_grad():
        features, _ = model.forward_head_features(x)
        assert (even[0] // features.shape[-2], even[1] // features.shape[-1]) == (model.logit_stride,) * 2
        assert features.shape[1] == model.head.out_channels
        a, b = model(x), model(x)
    assert torch.equal(a, b), "eval mode must be deterministic"

    # torch.export reproduces the eager model. Kept in float32 (float64 would make the depthwise
    # ConvNeXt/MobileNet entries ~10x slower): the program replays eager's ATen kernels on the same
    # shapes, so on any CPU both pick the same SIMD kernels (measured: bitwise equal); 1e-4 only
    # leaves room for a decomposition that rounds differently, while a traced-in shape or a
    # training-mode op errs by O(1).
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", ZOO, ids=ZOO_IDS)
def test_training_sections_are_valid(path):
    """Every protocol a config ships (data and train sections) is well-formed, without data."""
    cfg = load_config(path)
    if "train" in cfg:
        TrainConfig.from_mapping(cfg["train"])
    data = cfg.get("data")
    if data:
        assert set(data) <= set(DATA_KEYS)
        for split in ("train", "val"):
            if split in data:
                dataset_arguments(data["dataset"], data[split])
                transforms_from_config(data[split].get("transforms"), train=split == "train", ignore_index=255)
                classes = (data[split].get("bootstrap") or {}).get("classes", [])
                assert isinstance(classes, list)
