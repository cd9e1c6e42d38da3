"""Test-time strategies: multi-scale inputs, left-right flips and sliding windows, as pure
functions over a segmentation model.

* **Multi-scale inputs and flips** (DeepLabv3 §4.3, Tables 4 and 6, "MS" and "Flip"): the input
  is resized by each scale, the model runs on it (and on its left-right mirror image, whose
  prediction is mirrored back), the logits are resized to the input size and softmaxed, and the
  probabilities are averaged. The official DenseASPP ``inference.py`` does the same with its own
  scales and averages *log*-probabilities (``average="log_probabilities"``).
* **Sliding window**: images larger than the training crop (full 1024×2048 Cityscapes frames for
  a model trained on 512×1024 crops) are covered by overlapping windows of the crop size; the
  probabilities of overlapping windows are averaged. With multi-scale inputs every resized image
  is itself processed window by window.
``model`` is any module mapping a normalised batch ``(N, 3, h, w)`` to logits ``(N, C, h, w)``
(an :class:`atrous.models.Segmentor`, an engine, or a hand-made one in the tests). Images must
already be on the model's device and normalised as in training. The output stride is the
model's: to evaluate at another one (DeepLabv3 §4.3, Table 4: train at 16, evaluate at 8, +1.39%
mIoU), build an engine at it, ``build_engine(model, EngineOptions(output_stride=8))``
(:mod:`atrous.engines`), which runs a re-dilated copy with the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ..models.segmentor import check_image_size
from .choices import AVERAGES, MAX_INPUT_PIXELS


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Offsets of windows of length ``window`` tiling ``[0, size)``: a step of
    ``⌊window·(1 − overlap)⌋`` (so neighbours overlap by at least ``overlap``), the last window
    aligned to the border. One window at 0 when the image is no longer than the window.

    >>> window_starts(1024, 512, 1 / 3), window_starts(2048, 1024, 0.0), window_starts(300, 512, 0.5)
    ([0, 341, 512], [0, 1024], [0])
    """
    if size <= window:
        return [0]
    step = max(1, math.floor(window * (1 - overlap)))
    return [*range(0, size - window, step), size - window]


def predict_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: tuple[int, int] | None = None,
    overlap: float = 1 / 3,
    num_classes: int | None = None,
    average: str = "probabilities",
    max_pixels: int | None = None,
) -> torch.Tensor:
    """Class probabilities at input resolution with test-time strategies.

    Args:
        model: maps ``(N, 3, h, w)`` → logits ``(N, C, h, w)``; run in eval mode (its mode is
            restored afterwards).
        images: normalised float batch ``(N, 3, H, W)`` on the model's device.
        scales: input scale factors, e.g. ``TTA_PRESETS["deeplabv3"]["scales"]``; each scaled
            image is ``round(H·s) × round(W·s)`` (bilinear, antialiased when shrinking).
        flip: also predict the left-right mirrored input and mirror the prediction back.
        window: ``(h, w)`` sliding-window size (the training crop); ``None`` predicts whole images.
            Images smaller than the window are padded with zeros (the mean colour after
            normalisation, as DeepLab pads with the mean pixel) and the padding is cropped away.
        overlap: fraction ``[0, 1)`` by which neighbouring windows overlap.
        num_classes: expected ``C``; a model giving another number of channels is an error.
        average: ``"probabilities"`` (arithmetic mean over scales and flips, DeepLabv3) or
            ``"log_probabilities"`` (mean of log-probabilities, official DenseASPP; the result is
            the renormalised geometric mean, whose argmax is theirs).
        max_pixels: the largest input the strategy may make (a window; an image scaled up), in
            pixels; ``None``: :data:`~atrous.evaluation.choices.MAX_INPUT_PIXELS`, 0: no bound.
            Checked before anything is allocated (:func:`check_input_sizes`).

    Returns:
        float32 ``(N, C, H, W)`` probabilities summing to one over ``C``, computed under
        ``torch.inference_mode()`` (no autograd), one scale and flip at a time, summed in place.
    """
    scales = _check_arguments(model, images, scales, window, overlap, average, max_pixels)
    check_input_sizes(tuple(images.shape[-2:]), scales, max_pixels)
    log = average == "log_probabilities"
    total: torch.Tensor | None = None
    with eval_mode(model), torch.inference_mode():
        for scale in scales:
            scaled = _resize_image(images, scale)
            for mirrored in (False, True) if flip else (False,):
                x = scaled.flip(-1) if mirrored else scaled
                view = _predict_view(model, x, images.shape[-2:], window, overlap, num_classes, log)
                view = view.flip(-1) if mirrored else view
                total = view if total is None else total.add_(view)
        assert total is not None
        total /= len(scales) * (2 if flip else 1)
        return total.softmax(1) if log else total


def predict(model: nn.Module, images: torch.Tensor, **options: Any) -> torch.Tensor:
    """Labels ``(N, H, W)`` int64: the argmax of :func:`predict_probabilities` (same options)."""
    return predict_probabilities(model, images, **options).argmax(1)


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _check_arguments(
    model: nn.Module,
    images: torch.Tensor,
    scales: Sequence[float],
    window: tuple[int, int] | None,
    overlap: float,
    average: str,
    max_pixels: int | None,
) -> tuple[float, ...]:
    channels = getattr(model, "in_channels", 3)
    if (not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != channels
            or not images.is_floating_point()):
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a normalised float tensor (N, {channels}, H, W), got {shape}")
    stride = getattr(model, "output_stride", 1)
    scales = check_strategy(stride, scales, window, overlap, average, max_pixels)
    if window is None:  # windows pad small images; whole images must stay at least the stride at every scale
        check_image_size(int(images.shape[-2]), int(images.shape[-1]), stride, scales)
    return scales


def check_strategy(
    output_stride: int,
    scales: Sequence[float] = (1.0,),
    window: tuple[int, int] | None = None,
    overlap: float = 1 / 3,
    average: str = "probabilities",
    max_pixels: int | None = None,
) -> tuple[float, ...]:
    """Refuse (:class:`InputError`) test-time options that no image can be predicted with by a
    model at ``output_stride`` (a window of more than ``max_pixels``: see :func:`input_pixel_bound`);
    the scales as floats. Commands call it before reading any input, so a bad option is one error,
    not a skipped input per image."""
    scales = tuple(float(s) for s in scales)
    if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
        raise InputError(f"scales must be positive numbers, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), got {scales}")
    if not 0 <= overlap < 1:
        raise InputError(f"overlap must be a fraction in [0, 1), e.g. 1/3, got {overlap}")
    if average not in AVERAGES:
        raise InputError(f"average must be one of {AVERAGES}, got {average!r}")
    if window is not None:
        if len(window) != 2 or not all(isinstance(w, int) and w >= output_stride for w in window):
            raise InputError(
                f"window must be (height, width), integers of at least the model's output stride "
                f"{output_stride}, e.g. the training crop (512, 1024); got {window}"
            )
        check_window_pixels(window, max_pixels)
    return scales


def check_window_pixels(window: tuple[int, int], max_pixels: int | None = None) -> None:
    """Refuse (:class:`InputError`) a sliding window of more pixels than the bound
    (:func:`input_pixel_bound`): every window is a model input of that size, however small the image."""
    bound = input_pixel_bound(max_pixels)
    if bound and window[0] * window[1] > bound:
        raise InputError(
            f"--window {window[0]} {window[1]} is {window[0] * window[1]:,} pixels per window, more than "
            f"--max-pixels {bound:,}; use a smaller window (the training crop, e.g. 512 1024) or raise --max-pixels"
        )


def input_pixel_bound(max_pixels: int | None) -> int | None:
    """The bound in force on what a strategy makes: ``max_pixels``, :data:`MAX_INPUT_PIXELS` for
    ``None``, no bound (``None``) for 0."""
    if max_pixels is None:
        return MAX_INPUT_PIXELS
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0:
        raise InputError(f"--max-pixels must be a whole number of pixels (0: no limit), got {max_pixels!r}")
    return max_pixels or None


def check_input_sizes(size: tuple[int, int], scales: Sequence[float], max_pixels: int | None = None) -> None:
    """Refuse (:class:`InputError`), before anything is allocated, a scale that makes an image of
    ``size`` (H, W) larger than it is and larger than the bound (:func:`input_pixel_bound`).
    Scales that do not enlarge are always allowed: the image itself was read within its limit."""
    bound = input_pixel_bound(max_pixels)
    height, width = size
    for scale in scales:
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        if bound and h * w > max(bound, height * width):
            raise InputError(
                f"--scales {scale:g} makes the {height}x{width} image {h}x{w} = {h * w:,} pixels, more than "
                f"--max-pixels {bound:,}; use smaller scales or raise --max-pixels"
            )


def _resize_image(images: torch.Tensor, scale: float) -> torch.Tensor:
    """``(N, 3, H, W)`` → ``(N, 3, round(H·s), round(W·s))``, bilinear (antialiased when shrinking)."""
    if scale == 1.0:
        return images
    h, w = images.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)


def _predict_view(
    model: nn.Module,
    x: torch.Tensor,
    size: torch.Size,
    window: tuple[int, int] | None,
    overlap: float,
    num_classes: int | None,
    log: bool,
) -> torch.Tensor:
    """(Log-)probabilities ``(N, C, *size)`` of one scaled (maybe mirrored) batch ``x``.

    Whole images: logits → resized to ``size`` → softmax (DeepLabv3). Sliding windows: the
    window-averaged probabilities at ``x``'s resolution are resized to ``size``.
    """
    align_corners = getattr(model, "align_corners", False)
    if window is None:
        logits = logits_of(model, x, num_classes)
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
        return logits.log_softmax(1) if log else logits.softmax(1)
    probs = _sliding_window(model, x, window, overlap, num_classes)
    if probs.shape[-2:] != size:
        probs = F.interpolate(probs, size=size, mode="bilinear", align_corners=align_corners)
    return probs.clamp_min_(torch.finfo(probs.dtype).tiny).log_() if log else probs


def _sliding_window(
    model: nn.Module, x: torch.Tensor, window: tuple[int, int], overlap: float, num_classes: int | None
) -> torch.Tensor:
    """Probabilities ``(N, C, h, w)`` of ``x`` ``(N, 3, h, w)``, window by window, overlaps averaged.
    A window over the border of an image smaller than the window is padded with zeros (the mean
    colour) on its own; the image is never copied. :mod:`atrous.evaluation.windows` computes the
    labels of this average in memory of one band of windows."""
    n, _, h, w = x.shape
    win_h, win_w = window
    padded_h, padded_w = max(h, win_h), max(w, win_w)
    probs: torch.Tensor | None = None
    count = x.new_zeros(1, 1, padded_h, padded_w)
    for top in window_starts(padded_h, win_h, overlap):
        for left in window_starts(padded_w, win_w, overlap):
            rows, cols = slice(top, top + win_h), slice(left, left + win_w)
            tile = x[..., rows, cols]
            tile = F.pad(tile, (0, win_w - tile.shape[-1], 0, win_h - tile.shape[-2]))
            logits = logits_of(model, tile, num_classes)
            if probs is None:
                probs = x.new_zeros(n, logits.shape[1], padded_h, padded_w)
            probs[..., rows, cols] += logits.softmax(1)
            count[..., rows, cols] += 1
    assert probs is not None
    return probs.div_(count)[..., :h, :w]


def logits_of(model: nn.Module, x: torch.Tensor, num_classes: int | None) -> torch.Tensor:
    """``model(x)`` as float32 logits ``(N, C, h, w)``, checked against ``x`` and ``num_classes``."""
    logits = model(x)
    if not isinstance(logits, torch.Tensor) or logits.ndim != 4 or logits.shape[0] != x.shape[0] or logits.shape[-2:] != x.shape[-2:]:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"the model must map (N, 3, h, w) to logits (N, C, h, w); got {got} for input {tuple(x.shape)}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"the model gives {logits.shape[1]} classes, expected num_classes={num_classes}")
    return logits.float()
