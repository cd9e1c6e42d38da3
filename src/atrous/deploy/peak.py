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
from torch import nn

from ..errors import InputError
from ..models.tapwise import use_tapwise
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
    tapwise: bool = False,
) -> dict[str, Any]:
    """TFLOP/s of a 3×3, stride-1 convolution ``channels → out_channels`` (default: ``channels``)
    at ``dilation`` (padding = dilation: the output keeps the input's size) on
    ``(batch, channels, *size)``: the atrous convolutions of a dilated backbone and of ASPP at
    their real shapes. ``tapwise``: computed as :func:`~atrous.models.tapwise.use_tapwise`
    makes it (its FLOPs counted as the dilated convolution's, so the two rows compare directly)."""
    dtype = _dtype(precision)
    out_channels = out_channels or channels
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    g = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(batch, channels, *size, generator=g).to(device=device, dtype=dtype, memory_format=fmt)
    w = (torch.randn(out_channels, channels, 3, 3, generator=g) * 0.02).to(device=device, dtype=dtype, memory_format=fmt)
    module = nn.Conv2d(channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False)
    module.weight = nn.Parameter(w, requires_grad=False)
    use_tapwise(module, ((0, 1),) if tapwise else None)
    with _TF32(precision), torch.no_grad():
        seconds = _best_seconds(lambda: module(x), device, repeats, warmup)
    flops = 2 * 9 * channels * out_channels * batch * size[0] * size[1]
    return {"op": "conv3x3", "precision": precision, "shape": [batch, channels, *size], "out_channels": out_channels,
            "dilation": dilation, "tapwise": tapwise, "best_ms": round(seconds * 1e3, 4),
            "tflops_per_s": round(flops / seconds / 1e12, 3)}


# The probe `atrous benchmark --peak` runs: a matrix product, a 3×3 convolution at the width of a
# DenseASPP/ASPP branch, and ASPP's large-rate atrous convolution (2048 → 256 on a 64×128 map,
# DeepLabv3 at output stride 8 of a 512×1024 image) at the rates DeepLabv3 uses, dilated and
# tap-wise (models/tapwise.py: where bf16's dilated kernel is slow, the tap-wise rows show by how much).
PEAK_RATES = (1, 12, 24, 36)


def peak_table(device: torch.device, precisions: tuple[str, ...] = ("fp32", "bf16"), *, matmul_n: int = 2048,
               conv_size: tuple[int, int] = (64, 128), repeats: int = 3, warmup: int = 1) -> dict[str, Any]:
    """Every probe in every precision, measured in one run (best of ``repeats``), each row with
    its ratio to the fp32 row of the same probe (tap-wise rows: to the fp32 dilated kernel): the
    ceiling an engine's achieved FLOP/s is read against, and where a precision is slow (bf16's
    large-rate convolutions on some CPUs)."""
    rows = []
    for precision in precisions:
        rows.append(matmul_peak(device, precision, n=matmul_n, repeats=repeats, warmup=warmup))
        rows.append(conv3x3_peak(device, precision, channels=256, batch=1, size=conv_size, repeats=repeats, warmup=warmup))
        for rate in PEAK_RATES:
            for tapwise in (False, True) if rate > 1 else (False,):
                rows.append(conv3x3_peak(device, precision, channels=2048, out_channels=256, batch=1, size=conv_size,
                                         dilation=rate, repeats=repeats, warmup=warmup, tapwise=tapwise))
    fp32 = {_probe(r): r["tflops_per_s"] for r in rows if r["precision"] == "fp32" and not r.get("tapwise")}
    for row in rows:
        base = fp32.get(_probe(row))
        row["vs_fp32"] = round(row["tflops_per_s"] / base, 2) if base else None
    return {"device": str(device), "threads": torch.get_num_threads(), "rows": rows}


def _probe(row: dict[str, Any]) -> tuple:
    return row["op"], tuple(row["shape"]), row.get("out_channels"), row.get("dilation")


def format_peak_table(report: dict[str, Any]) -> str:
    """Markdown: probe, precision, GFLOP/s, ratio to fp32."""
    lines = [f"Peak probe on {report['device']} ({report['threads']} threads; best of the runs)", "",
             "| probe | precision | GFLOP/s | × fp32 |", "|---|---|---:|---:|"]
    for r in report["rows"]:
        if r["op"] == "matmul":
            probe = "matmul " + "×".join(str(d) for d in r["shape"])
        else:
            _, c, h, w = r["shape"]
            probe = f"conv 3×3 {c}→{r['out_channels']} on {h}×{w}" + (f", rate {r['dilation']}" if r["dilation"] > 1 else "")
            probe += ", tap-wise" if r.get("tapwise") else ""
        ratio = "" if r["vs_fp32"] is None else f"{r['vs_fp32']:.2f}"
        lines.append(f"| {probe} | {r['precision']} | {r['tflops_per_s'] * 1000:.0f} | {ratio} |")
    return "\n".join(lines)
