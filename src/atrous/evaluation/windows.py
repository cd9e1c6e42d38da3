"""Sliding-window prediction in memory of the window, not of the image: labels band by band.

:func:`atrous.evaluation.inference.predict_probabilities` with a ``window`` returns the averaged
probabilities of the whole image, ``(N, C, H, W)`` float32: 4.9 GB for 19 classes on an 8000×8000
image, before its argmax. :func:`window_labels` computes the same argmax while holding only one
band of window rows: windows are visited in the same order (top to bottom, left to right), their
softmaxed logits summed into a band accumulator ``(C, window height, W)``; once no later window
reaches a row, the row is final — divided by the number of windows covering it, averaged with its
mirrored prediction (``flip``), argmaxed and written into the ``(H, W)`` labels — and the band
moves down. Each window's input is cut from the image and normalised on its own (``tile``), and a
window hanging over a small image's border is padded with zeros (the mean colour), so neither the
normalised image nor a padded copy of it is ever made. Every pixel sees the same floating-point
operations in the same order as in ``predict_probabilities``: the labels are identical.

Memory: the image (uint8), the labels, and per band ``C × window height × W`` float32 (twice
with ``flip``), plus the network's activations on one window.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .inference import logits_of, window_starts

# tile(rows, cols, mirrored) → the normalised input (1, channels, len(rows), len(cols)) of those
# rows and columns of the image (of its mirror image when ``mirrored``), on the model's device.
Tile = Callable[[slice, slice, bool], torch.Tensor]


def window_labels(
    model: nn.Module,
    tile: Tile,
    size: tuple[int, int],
    *,
    window: tuple[int, int],
    overlap: float = 1 / 3,
    flip: bool = False,
    num_classes: int | None = None,
    average: str = "probabilities",
) -> torch.Tensor:
    """Labels ``(H, W)`` (uint8 up to 256 classes, else int32, on the CPU) of an image of ``size``
    ``(H, W)`` predicted window by window at scale 1: the argmax of
    :func:`~atrous.evaluation.inference.predict_probabilities` with the same ``window``,
    ``overlap``, ``flip`` and ``average``, in memory of one band of windows."""
    height, width = size
    win_h, win_w = window
    padded_h, padded_w = max(height, win_h), max(width, win_w)
    tops, lefts = window_starts(padded_h, win_h, overlap), window_starts(padded_w, win_w, overlap)
    row_count = _coverage(tops, win_h, padded_h)
    col_count = _coverage(lefts, win_w, padded_w)
    views = (False, True) if flip else (False,)
    bands: dict[bool, torch.Tensor] = {}
    labels: torch.Tensor | None = None
    for index, top in enumerate(tops):
        for mirrored in views:
            band = bands.get(mirrored)
            for left in lefts:
                logits = _window_logits(model, tile, top, left, window, size, mirrored, num_classes)
                if band is None:
                    band = logits.new_zeros(logits.shape[1], win_h, padded_w)
                band[:, :, left:left + win_w] += logits[0].softmax(0)
            bands[mirrored] = band
        done = (tops[index + 1] if index + 1 < len(tops) else padded_h) - top  # rows no later window reaches
        rows = slice(top, min(top + done, height))
        if rows.start < rows.stop:
            final = _finish(bands, rows.stop - rows.start, row_count[rows], col_count, width, average)
            if labels is None:
                dtype = torch.uint8 if final.shape[0] <= 256 else torch.int32
                labels = torch.empty(height, width, dtype=dtype)
            labels[rows] = final.argmax(0).to("cpu", labels.dtype)
        for band in bands.values():  # move the band down: keep the rows later windows reach
            kept = win_h - done
            if kept > 0:
                band[:, :kept] = band[:, done:].clone()
            band[:, max(kept, 0):] = 0
    assert labels is not None
    return labels


def _coverage(starts: list[int], length: int, size: int) -> torch.Tensor:
    """How many windows cover each position ``(size,)``, float32 (whole numbers: exact)."""
    count = torch.zeros(size)
    for start in starts:
        count[start:start + length] += 1
    return count


def _window_logits(model: nn.Module, tile: Tile, top: int, left: int, window: tuple[int, int],
                   size: tuple[int, int], mirrored: bool, num_classes: int | None) -> torch.Tensor:
    """Logits ``(1, C, *window)`` of the window at ``(top, left)`` of the image padded to the window
    (zeros beyond the image's bottom and right border: the mean colour)."""
    height, width = size
    rows = slice(top, min(top + window[0], height))
    cols = slice(left, min(left + window[1], width))
    x = tile(rows, cols, mirrored)
    pad = (0, window[1] - x.shape[-1], 0, window[0] - x.shape[-2])
    if any(pad):
        x = F.pad(x, pad)
    return logits_of(model, x, num_classes)


def _finish(bands: dict[bool, torch.Tensor], rows: int, row_count: torch.Tensor, col_count: torch.Tensor,
            width: int, average: str) -> torch.Tensor:
    """The scores ``(C, rows, width)`` of the first ``rows`` rows of the bands: each view's
    window average (log-probabilities for ``average="log_probabilities"``), summed over the
    views, as :func:`~atrous.evaluation.inference.predict_probabilities` combines them."""
    log = average == "log_probabilities"
    total: torch.Tensor | None = None
    for mirrored, band in bands.items():
        count = (row_count[:, None] * col_count[None, :]).to(band.device)
        view = band[:, :rows].div(count[:, :band.shape[-1]][None])[..., :width]
        if log:
            view = view.clamp_min_(torch.finfo(view.dtype).tiny).log_()
        if mirrored:
            view = view.flip(-1)
        total = view if total is None else total.add_(view)
    assert total is not None
    total /= len(bands)
    return total.softmax(0) if log else total
