"""Tap-wise atrous convolutions: the same arithmetic as the dilated kernel (identity in float64,
in eager and in the traced form, rates larger than the map included), switched in and out without
touching parameters, chosen only for bf16 on AMX, and exported with dynamic sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers_engines import CONFIG
from helpers_models import randomized_batchnorm
from test_precision_auto import CPUS

from atrous.engines import EngineOptions, build_engine
from atrous.engines import precision as precision_module
from atrous.engines.files import exported_entry
from atrous.engines.precision import TAPWISE_RULES, choose_tapwise
from atrous.engines.registry import engine_spec
from atrous.models import build_model
from atrous.models.tapwise import TapwiseConv2d, _shifted_sum, tapwise_applied, use_tapwise

EVERY_RATE = ((0, 1),)  # a rule that computes every 3×3 convolution tap-wise


@pytest.mark.parametrize("rate, size", [(1, (8, 9)), (3, (7, 11)), (12, (8, 30)), (36, (10, 40)), (24, (3, 3))])
@pytest.mark.parametrize("bias", [True, False])
def test_both_forms_equal_the_dilated_convolution_in_float64(rate, size, bias):
    torch.manual_seed(rate)
    conv = torch.nn.Conv2d(5, 4, 3, padding=rate, dilation=rate, bias=bias).double()
    x = torch.randn(2, 5, *size, dtype=torch.float64)
    expected = F.conv2d(x, conv.weight, conv.bias, padding=rate, dilation=rate)
    assert use_tapwise(conv, EVERY_RATE) == 1 and type(conv) is TapwiseConv2d
    torch.testing.assert_close(conv(x), expected, rtol=0, atol=1e-12)  # eager: the regions the taps reach
    torch.testing.assert_close(conv(x.contiguous(memory_format=torch.channels_last)), expected, rtol=0, atol=1e-12)
    traced = _shifted_sum(x, conv.weight, rate) + (conv.bias.view(1, -1, 1, 1) if bias else 0)
    torch.testing.assert_close(traced, expected, rtol=0, atol=1e-12)  # the form exports write


def tiny(rates: list[int], num_stages: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = {**CONFIG["model"], "backbone": {**CONFIG["model"]["backbone"], "num_stages": num_stages},
           "head": {**CONFIG["model"]["head"], "atrous_rates": rates}}
    return randomized_batchnorm(build_model(cfg, pretrained_backbone=False), seed=1).eval()


def test_a_whole_segmentor_is_unchanged_and_its_parameters_untouched():
    model = tiny([3, 18]).double()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        expected = model(x)
        # Every 3×3 convolution padded by its rate: ResNet-18's (rate 1, and 2 in the dilated layer3) and the head's.
        count = use_tapwise(model, EVERY_RATE)
        assert count == sum(type(m) is TapwiseConv2d for m in model.modules()) > 10
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-10)
    assert model.state_dict().keys() == state.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    use_tapwise(model, None)
    assert not any(type(m) is TapwiseConv2d for m in model.modules())


def test_the_rule_selects_by_width_and_rate_and_follows_an_output_stride_switch():
    model = tiny([3, 18])
    assert model.head.layers[1].conv2.in_channels == 32
    # The head's rate-18 layer only by the second pair (its input is 32 channels wide).
    assert use_tapwise(model, ((1024, 2), (0, 18))) == 1
    assert model.head.layers[1].conv2.tapwise_min_rate == 18
    # From rate 2: ResNet-18's dilated layer3 (rate 2 at output stride 8 in three of its four 3×3
    # convolutions: the first keeps the previous rate, as torchvision dilates) and both head layers.
    assert use_tapwise(model, ((0, 2),)) == 3 + 2
    model.set_output_stride(16)  # layer3 strided again: rate 1, below the rule
    assert use_tapwise(model, ((0, 2),)) == 2


def test_convolutions_with_their_own_forward_are_left_alone():
    class Standardised(torch.nn.Conv2d):  # e.g. timm's StdConv2d: a forward of its own
        pass

    conv = Standardised(4, 4, 3, padding=6, dilation=6)
    assert use_tapwise(torch.nn.Sequential(conv), EVERY_RATE) == 0 and type(conv) is Standardised


def test_tapwise_applied_restores_what_was_there():
    model = tiny([3, 18])
    use_tapwise(model, ((0, 6),))
    before = [(type(m), getattr(m, "tapwise_min_rate", None)) for m in model.modules()]
    with tapwise_applied(model, EVERY_RATE) as count:
        assert count > 10
    assert [(type(m), getattr(m, "tapwise_min_rate", None)) for m in model.modules()] == before


@pytest.mark.parametrize("engine, cpu, device, precision, expected", [
    ("torch", "amx", "cpu", "bf16", ((1024, 6), (0, 18))), ("openvino", "amx", "cpu", "bf16", ((1024, 6),)),
    ("torch", "amx", "cpu", "fp32", None), ("onnxruntime", "amx", "cpu", "bf16", None),
    ("torch", "avx512_bf16", "cpu", "bf16", None), ("openvino", "avx2", "cpu", "bf16", None),
    ("torch", "amx", "cuda", "bf16", None),
])
def test_tapwise_is_chosen_for_bf16_on_amx_only(engine, cpu, device, precision, expected):
    assert choose_tapwise(engine, torch.device(device), precision, CPUS[cpu]) == expected
    assert expected is None or TAPWISE_RULES[engine] == expected


def test_the_torch_engine_applies_the_choice(monkeypatch):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: CPUS["amx"])
    model = tiny([3, 18])
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        fp32 = build_engine(model, EngineOptions(precision="fp32"))
        assert fp32.tapwise_convs == 0 and fp32(x).shape == (1, 19, 64, 96)
        bf16 = build_engine(model, EngineOptions(precision="bf16"))
        assert bf16.tapwise_convs == 1  # the head's rate-18 layer (TAPWISE_RULES["torch"])
        agreement = (bf16(x).argmax(1) == fp32(x).argmax(1)).float().mean()
    assert agreement > 0.95


@pytest.mark.slow
def test_the_traced_form_exports_with_dynamic_sizes(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from atrous.engines.export import export_model

    model = tiny([3, 18], num_stages=2)
    with tapwise_applied(model, ((0, 3),)) as count:  # the head's two layers
        assert count == 2
        result = export_model(model, tmp_path / "tapwise.onnx", "onnx", image_size=(64, 64), verify=True)
    assert result.max_abs_diff < 1e-4
    session = onnxruntime.InferenceSession(str(tmp_path / "tapwise.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(2, 3, 40, 72)  # a 5×9 map at output stride 8: the rate-18 taps lie wholly in the padding
    with torch.no_grad():
        expected = model(x)
    with tapwise_applied(model, ((0, 3),)), torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)  # the eager form on that size
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_openvino_bf16_on_amx_gets_its_own_tapwise_export(tmp_path, monkeypatch):
    pytest.importorskip("openvino")
    monkeypatch.setattr(precision_module, "cpu_features", lambda: CPUS["amx"])
    model = tiny([3, 18], num_stages=2)
    fp32 = build_engine(model, EngineOptions(engine="openvino", precision="fp32", cache_dir=tmp_path))
    bf16 = build_engine(model, EngineOptions(engine="openvino", precision="bf16", cache_dir=tmp_path))
    x = torch.randn(1, 3, 64, 96)
    agreement = (bf16(x).argmax(1) == fp32(x).argmax(1)).float().mean()
    assert agreement > 0.95
    plain = exported_entry(model, engine_spec("openvino"), tmp_path, log=False)
    tapwise = exported_entry(model, engine_spec("openvino"), tmp_path, log=False, tapwise=TAPWISE_RULES["openvino"])
    assert plain.path != tapwise.path  # another ONNX export, another OpenVINO model
    onnx_entries = sorted(p.name for p in tmp_path.glob("onnx-*"))
    assert len(onnx_entries) == 2
    assert not any(type(m) is TapwiseConv2d for m in model.modules())  # the model itself is unchanged
