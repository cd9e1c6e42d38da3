"""Test-time strategies against independent computations: flips with a position-dependent
model, scale averaging with a model whose answer depends on the input size, multi-scale and
sliding windows with a fully local (1×1 conv) model, the output-stride switch, bad arguments."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atrous.engines import EngineOptions, build_engine
from atrous.errors import InputError
from atrous.evaluation.choices import TTA_PRESETS
from atrous.evaluation.inference import (
    predict,
    predict_probabilities,
    window_starts,
)
from atrous.models import build_model

NUM_CLASSES = 4


class Local(nn.Module):
    """A fully local model: one 1×1 convolution, logits at every pixel from that pixel only."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 1)
        torch.nn.init.normal_(self.conv.weight, std=2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Ramp(Local):
    """1×1 conv plus a logit ramp along x: mirroring the input does not mirror the ramp."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + ramp(x.shape[-1])


def ramp(width: int) -> torch.Tensor:
    """``(1, K, 1, W)``: class k gets the logit k·u, u from −2 (left) to 2 (right)."""
    u = torch.linspace(-2, 2, width)
    return (torch.arange(NUM_CLASSES).view(1, -1, 1, 1) * u).reshape(1, NUM_CLASSES, 1, width)


class SizeDependent(nn.Module):
    """Constant logits that depend on the input width only: class 1 gets ``w / 16``, class 0 gets 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        logits = torch.zeros(n, 2, h, w)
        logits[:, 1] = w / 16
        return logits


class Recorder(nn.Module):
    """Wraps a model and records the input sizes it sees."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.sizes = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(tuple(x.shape[-2:]))
        return self.model(x)


def smooth_images(n: int = 2, size: tuple[int, int] = (32, 64)) -> torch.Tensor:
    """Low-frequency images (a 4×8 random grid upsampled): resampling them loses little."""
    return F.interpolate(torch.randn(n, 3, 4, 8), size=size, mode="bilinear", align_corners=False)


def tiny_segmentor(head: dict | None = None, stride: int = 8) -> nn.Module:
    head = head or {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8}
    return build_model({
        "num_classes": NUM_CLASSES,
        "backbone": {"name": "resnet18", "output_stride": stride, "pretrained": False},
        "head": head,
    }).eval()


@pytest.fixture(scope="module")
def segmentor() -> nn.Module:
    """A tiny DenseASPP (ResNet-18, output stride 8); tests must leave it as they found it."""
    torch.manual_seed(0)
    return tiny_segmentor()


# -- flips and scales -------------------------------------------------------------------------

def test_flip_averages_the_prediction_and_the_mirrored_prediction_of_the_mirror_image():
    model, x = Ramp(), torch.randn(2, 3, 8, 16)
    content = model.conv(x).detach()
    # model(flip x) = conv(flip x) + ramp; mirrored back: conv(x) + flip(ramp).
    expected = ((content + ramp(16)).softmax(1) + (content + ramp(16).flip(-1)).softmax(1)) / 2
    torch.testing.assert_close(predict_probabilities(model, x, flip=True), expected)
    torch.testing.assert_close(predict_probabilities(model, x), (content + ramp(16)).softmax(1))


def test_scales_average_the_probabilities_of_each_scale():
    x = torch.randn(1, 3, 16, 32)
    scales = (0.5, 1.0, 1.5)
    p1 = torch.tensor([torch.sigmoid(torch.tensor(round(32 * s) / 16)) for s in scales])  # class 1 per scale
    probs = predict_probabilities(SizeDependent(), x, scales=scales)
    assert probs.shape == (1, 2, 16, 32)
    torch.testing.assert_close(probs[:, 1], torch.full((1, 16, 32), float(p1.mean())))
    # official DenseASPP: mean of log-probabilities, i.e. the renormalised geometric mean
    log = predict_probabilities(SizeDependent(), x, scales=scales, average="log_probabilities")
    geometric = torch.stack([p1.log().mean(), (1 - p1).log().mean()]).exp()
    torch.testing.assert_close(log[0, :, 0, 0], (geometric / geometric.sum()).flip(0))


def test_multi_scale_equals_single_scale_for_a_local_model_up_to_interpolation():
    model, x = Local(), smooth_images()
    single = predict_probabilities(model, x)
    multi = predict_probabilities(model, x, scales=(0.5, 1.0, 1.5, 2.0))
    assert multi.shape == single.shape == (2, NUM_CLASSES, 32, 64)
    difference = (multi - single).abs()  # shrinking to 0.5 smooths a little
    assert difference.mean() < 0.005 and difference.max() < 0.1
    assert (multi.argmax(1) == single.argmax(1)).float().mean() > 0.99
    torch.testing.assert_close(multi.sum(1), torch.ones(2, 32, 64))


def test_predict_is_the_argmax_and_presets_run():
    model, x = Local(), smooth_images(1)
    for name, options in TTA_PRESETS.items():
        probs = predict_probabilities(model, x, **options)
        labels = predict(model, x, **options)
        assert labels.dtype == torch.int64 and labels.shape == (1, 32, 64), name
        assert torch.equal(labels, probs.argmax(1)), name
    assert TTA_PRESETS["deeplabv3"]["scales"] == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
    assert TTA_PRESETS["denseaspp-official"]["scales"] == (0.5, 0.75, 1.0, 1.25, 1.5, 1.8)


def test_the_model_runs_in_eval_mode_and_keeps_its_mode():
    model = nn.Sequential(nn.Dropout2d(0.5), Local()).train()
    x = torch.randn(1, 3, 8, 8)
    assert torch.equal(predict_probabilities(model, x), predict_probabilities(model, x))
    assert model.training


# -- sliding window ---------------------------------------------------------------------------

def test_window_starts_tile_with_the_last_window_on_the_border():
    assert window_starts(1024, 512, 1 / 3) == [0, 341, 512]
    assert window_starts(2048, 1024, 1 / 3) == [0, 682, 1024]
    assert window_starts(64, 32, 0.0) == [0, 32]
    assert window_starts(20, 32, 0.5) == [0]
    for size, window, overlap in [(100, 30, 0.25), (97, 16, 0.5), (64, 64, 0.9)]:
        starts = window_starts(size, window, overlap)
        covered = torch.zeros(size, dtype=torch.bool)
        for s in starts:
            covered[s : s + window] = True
        assert covered.all() and starts[-1] + window == size
        assert all(b - a <= window * (1 - overlap) for a, b in zip(starts, starts[1:], strict=False))


def test_window_covering_the_image_equals_whole_image_inference(segmentor):
    model, x = segmentor, torch.randn(1, 3, 32, 64)
    torch.testing.assert_close(predict_probabilities(model, x, window=(32, 64)), predict_probabilities(model, x))


def test_tiled_windows_equal_whole_image_inference_for_a_local_model():
    model, x = Recorder(Local()), torch.randn(2, 3, 32, 64)
    whole = predict_probabilities(model, x)
    model.sizes.clear()
    tiled = predict_probabilities(model, x, window=(16, 24), overlap=0.5)
    assert model.sizes == [(16, 24)] * (len(window_starts(32, 16, 0.5)) * len(window_starts(64, 24, 0.5)))
    torch.testing.assert_close(tiled, whole)
    # larger than the image: padded to the window, padding cropped away
    model.sizes.clear()
    torch.testing.assert_close(predict_probabilities(model, x, window=(40, 80)), whole)
    assert model.sizes == [(40, 80)]


def test_tiled_windows_change_the_prediction_of_a_model_with_context(segmentor):
    model, x = segmentor, torch.randn(1, 3, 32, 64)
    tiled = predict_probabilities(model, x, window=(32, 32), overlap=0.5)
    assert tiled.shape == (1, NUM_CLASSES, 32, 64)
    assert not torch.allclose(tiled, predict_probabilities(model, x), atol=1e-4)


def test_each_scale_is_processed_with_the_sliding_window():
    model, x = Recorder(Local()), smooth_images(1)
    probs = predict_probabilities(model, x, scales=(0.5, 2.0), window=(24, 40), overlap=0.25)
    assert set(model.sizes) == {(24, 40)}  # the 16×32 image padded, the 64×128 one tiled
    assert len(model.sizes) == 1 + len(window_starts(64, 24, 0.25)) * len(window_starts(128, 40, 0.25))
    # independently: per scale, resize the image, softmax, resize the probabilities back
    local = model.model
    expected = sum(
        F.interpolate(local(F.interpolate(x, scale_factor=s, mode="bilinear", antialias=s < 1)).softmax(1),
                      size=(32, 64), mode="bilinear")
        for s in (0.5, 2.0)
    ) / 2
    torch.testing.assert_close(probs, expected)


# -- output stride ----------------------------------------------------------------------------

def test_an_engine_at_another_output_stride_keeps_the_weights_and_changes_the_resolution():
    model = tiny_segmentor({"name": "aspp", "atrous_rates": [6, 12, 18], "out_channels": 32}, stride=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 32, 64)
    engine = build_engine(model, EngineOptions(output_stride=8, memory_format="contiguous"), "cpu", log=False)
    assert engine.output_stride == 8 and engine.model.head.atrous_rates == (12, 24, 36)
    assert engine.model.forward_head_features(x)[0].shape[-2:] == (4, 8)
    assert model.output_stride == 16 and model.head.atrous_rates == (6, 12, 18), "the caller's model is untouched"
    assert model.forward_head_features(x)[0].shape[-2:] == (2, 4)
    after = engine.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    redilated = copy.deepcopy(model)
    redilated.set_output_stride(8)
    torch.testing.assert_close(predict_probabilities(engine, x), predict_probabilities(redilated, x))
    assert not torch.allclose(predict_probabilities(model, x), predict_probabilities(engine, x), atol=1e-4)


def test_an_output_stride_a_scale_or_the_model_cannot_take_is_refused(segmentor):
    engine = build_engine(segmentor, EngineOptions(output_stride=32, memory_format="contiguous"), "cpu", log=False)
    with pytest.raises(InputError, match=r"image of 32x32 pixels \(at scale 0.5: 16x16\) is smaller than the "
                                         r"model's output stride 32.*use scales of at least 1"):
        predict_probabilities(engine, torch.randn(1, 3, 32, 32), scales=(0.5,))
    with pytest.raises(ValueError, match="output_stride must be one of"):
        build_engine(segmentor, EngineOptions(output_stride=12), "cpu", log=False)
    assert segmentor.output_stride == 8
    with pytest.raises(ValueError, match="at least the model's output stride 32"):
        predict_probabilities(engine, torch.randn(1, 3, 32, 64), window=(16, 16))


# -- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "options, message",
    [
        ({"scales": (0.0, 1.0)}, "scales must be positive"),
        ({"scales": (-0.5,)}, "scales must be positive"),
        ({"scales": ()}, "scales must be positive"),
        ({"overlap": 1.0, "window": (32, 32)}, r"overlap must be a fraction in \[0, 1\)"),
        ({"overlap": -0.1}, "overlap must be a fraction"),
        ({"window": (4, 64)}, "at least the model's output stride 8"),
        ({"average": "median"}, "average must be one of"),
        ({"num_classes": 3}, "gives 4 classes, expected num_classes=3"),
    ],
)
def test_bad_arguments_raise_clear_errors(segmentor, options, message):
    model = segmentor
    with pytest.raises(ValueError, match=message):
        predict_probabilities(model, torch.randn(1, 3, 32, 64), **options)
    assert model.output_stride == 8


def test_images_must_be_a_float_batch():
    with pytest.raises(ValueError, match=r"float tensor \(N, 3, H, W\)"):
        predict_probabilities(Local(), torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"float tensor \(N, 3, H, W\)"):
        predict_probabilities(Local(), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
