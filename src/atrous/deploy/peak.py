"""The machine's own ceiling: the rate of a large matrix product and of a 3×3 convolution per
precision, measured by the process that reports a model's speed, so that achieved FLOP/s can be
given as a fraction of what the same device reaches on its best-suited work (the model FLOP
utilisation, MFU).

A matrix product ``(n, n) @ (n, n)`` is ``2 n³`` FLOPs; a 3×3 convolution from ``C`` to ``C``
channels on an ``(N, C, H, W)`` map at stride 1 and padding 1 is ``2 · 9 · C² · N · H · W``
FLOPs. Each is timed ``repeats`` times after ``warmup`` untimed runs (device-synchronised) and
the best run is reported: a ceiling, not a typical figure.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..errors import InputError
from .benchmark import time_once

DTYPES = {"fp32": torch.float32, "tf32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _best_seconds(fn: Any, device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    return min(time_once(fn, device) for _ in range(repeats))


def _dtype(precision: str) -> torch.dtype:
    if precision not in DTYPES:
        raise InputError(f"precision must be one of {list(DTYPES)}, got {precision!r}")
    return DTYPES[precision]


class _TF32:
    """``tf32`` lets CUDA's fp32 products use TensorFloat-32; every other precision forbids it."""

    def __init__(self, precision: str) -> None:
        self.allow = precision == "tf32"

    def __enter__(self) -> None:
        self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = self.allow
        torch.backends.cudnn.allow_tf32 = self.allow

    def __exit__(self, *exc: object) -> None:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved


def matmul_peak(device: torch.device, precision: str = "bf16", n: int = 8192, repeats: int = 10, warmup: int = 3) -> dict[str, Any]:
    """TFLOP/s of ``(n, n) @ (n, n)`` in ``precision`` on ``device`` (random operands)."""
    dtype = _dtype(precision)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    with _TF32(precision):
        seconds = _best_seconds(lambda: a @ b, device, repeats, warmup)
    flops = 2 * n**3
    return {"op": "matmul", "precision": precision, "shape": [n, n, n], "best_ms": round(seconds * 1e3, 4),
            "tflops_per_s": round(flops / seconds / 1e12, 3)}


def conv3x3_peak(
    device: torch.device, precision: str = "bf16", channels: int = 256, batch: int = 16, size: tuple[int, int] = (128, 256),
    repeats: int = 10, warmup: int = 3, channels_last: bool = True, *, out_channels: int | None = None, dilation: int = 1,
) -> dict[str, Any]:
    """TFLOP/s of a 3×3, stride-1 convolution ``channels → out_channels`` (default: ``channels``)
    at ``dilation`` (padding = dilation: the output keeps the input's size) on
    ``(batch, channels, *size)``: the atrous convolutions of a dilated backbone and of ASPP at
    their real shapes."""
    dtype = _dtype(precision)
    out_channels = out_channels or channels
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, channels, *size, generator=g).to(device=device, dtype=dtype, memory_format=fmt)
    w = (torch.randn(out_channels, channels, 3, 3, generator=g) * 0.02).to(device=device, dtype=dtype, memory_format=fmt)
    with _TF32(precision), torch.no_grad():
        seconds = _best_seconds(lambda: F.conv2d(x, w, padding=dilation, dilation=dilation), device, repeats, warmup)
    flops = 2 * 9 * channels * out_channels * batch * size[0] * size[1]
    return {"op": "conv3x3", "precision": precision, "shape": [batch, channels, *size], "out_channels": out_channels,
            "dilation": dilation, "best_ms": round(seconds * 1e3, 4), "tflops_per_s": round(flops / seconds / 1e12, 3)}
