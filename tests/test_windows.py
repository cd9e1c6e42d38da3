"""Sliding-window labels band by band (atrous.evaluation.windows) are exactly the labels of the
whole-image implementation they replace in ``atrous predict``: same windows, same sums, same
order, every pixel compared for equality, with and without flips, log-probability averaging and
windows larger than the image; and the overlay, blended band by band."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision import tv_tensors

from atrous.data import palettes
from atrous.data.palettes import colorize, overlay
from atrous.evaluation.inference import predict_probabilities, window_starts
from atrous.evaluation.predict_app import Predictor
from atrous.models import build_model

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A tiny DenseASPP with context (ResNet-18, output stride 8): windows change its answer."""
    torch.manual_seed(0)
    return build_model({"num_classes": NUM_CLASSES, "backbone": {"name": "resnet18", "output_stride": 8, "num_stages": 2,
                                                                "pretrained": False},
                        "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16,
                                 "growth_channels": 8}}).eval()


def whole_image_windows(model: nn.Module, x: torch.Tensor, window: tuple[int, int], overlap: float) -> torch.Tensor:
    """The implementation windowed prediction had before: pad the whole image, sum the softmaxed
    window logits into a padded (N, C, H, W) accumulator, divide by the count, crop."""
    n, _, h, w = x.shape
    win_h, win_w = window
    x = F.pad(x, (0, max(win_w - w, 0), 0, max(win_h - h, 0)))
    padded_h, padded_w = x.shape[-2:]
    probs, count = None, x.new_zeros(1, 1, padded_h, padded_w)
    for top in window_starts(padded_h, win_h, overlap):
        for left in window_starts(padded_w, win_w, overlap):
            rows, cols = slice(top, top + win_h), slice(left, left + win_w)
            logits = model(x[..., rows, cols]).float()
            if probs is None:
                probs = x.new_zeros(n, logits.shape[1], padded_h, padded_w)
            probs[..., rows, cols] += logits.softmax(1)
            count[..., rows, cols] += 1
    return probs.div_(count)[..., :h, :w]


def reference(model: nn.Module, x: torch.Tensor, window: tuple[int, int], overlap: float, flip: bool,
              log: bool) -> torch.Tensor:
    """``predict_probabilities`` at scale 1 as it was, over :func:`whole_image_windows`."""
    total = None
    with torch.inference_mode():
        for mirrored in (False, True) if flip else (False,):
            view = whole_image_windows(model, x.flip(-1) if mirrored else x, window, overlap)
            if log:
                view = view.clamp_min_(torch.finfo(view.dtype).tiny).log_()
            view = view.flip(-1) if mirrored else view
            total = view if total is None else total.add_(view)
        total /= 2 if flip else 1
        return total.softmax(1) if log else total


@pytest.mark.parametrize(("size", "window", "overlap", "flip", "average"), [
    ((37, 45), (16, 24), 1 / 3, False, "probabilities"),
    ((29, 40), (16, 24), 0.5, True, "log_probabilities"),
    ((12, 20), (16, 24), 1 / 3, True, "probabilities"),  # an image smaller than the window: padded
    ((37, 45), (16, 64), 0.0, False, "probabilities"),  # wider than the image: padded on the right only
])
def test_band_by_band_labels_equal_the_whole_image_implementation(model, size, window, overlap, flip, average):
    image = np.random.default_rng(sum(size)).integers(0, 256, (*size, 3), dtype=np.uint8)
    options = {"scales": (1.0,), "flip": flip, "window": window, "overlap": overlap, "average": average}
    predictor = Predictor(model, "imagenet", options=options)
    x = predictor.transform(tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1)))[None]  # the whole image
    expected = reference(model, x, window, overlap, flip, average == "log_probabilities")

    labels, probs = predictor.predict(image)
    assert probs is None and labels.dtype == np.uint8 and labels.shape == size
    assert np.array_equal(labels, expected[0].argmax(0).numpy())
    # the whole-image path (kept for --probabilities and multi-scale) gives the same numbers too
    assert torch.equal(predict_probabilities(model, x, **options), expected)
    labels_with_probs, kept = predictor.predict(image, probabilities=True)
    assert torch.equal(kept, expected[0]) and np.array_equal(labels_with_probs, labels)


def test_the_overlay_blended_band_by_band_equals_the_whole_image_formula(monkeypatch):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (23, 17, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, (23, 17))
    labels[0, :5] = 255  # ignored: the image shows through
    palette = rng.integers(0, 256, (4, 3), dtype=np.uint8)
    colours = colorize(labels, palette).astype(np.float32)
    expected = image.astype(np.float32)
    labelled = labels != 255
    expected[labelled] = 0.45 * expected[labelled] + 0.55 * colours[labelled]
    monkeypatch.setattr(palettes, "OVERLAY_BAND_PIXELS", 17 * 4)  # bands of 4 rows, the last of 3
    assert np.array_equal(overlay(image, labels, palette), expected.astype(np.uint8))
