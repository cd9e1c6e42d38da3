"""Atrous 3×3 convolutions computed tap by tap, where the hardware's dilated path is slow.

A 3×3 convolution at rate ``r`` with padding ``r`` sums nine 1×1 convolutions of the input
shifted by ``(dy, dx) ∈ {-r, 0, r}²``::

    y[:, :, i, j] = b + Σ_taps W[:, :, ty, tx] · x[:, :, i + dy, j + dx]   (x is 0 outside)

:class:`TapwiseConv2d` computes the taps with 1×1 convolutions, the fastest kernel every engine
has: in eager mode one per kernel row (``3·C_out`` filters) over the input rows that row reaches,
each tap added into the output region it covers (taps lying wholly in the padding cost nothing);
traced for export, one with ``9·C_out`` filters over the whole map, each tap's channels shifted by
its offset (pad by the rate, slice) and summed. The arithmetic is the same as the dilated
convolution's (up to the order of the sum: equal within 1e-12 in float64, ≤ 1e-5 relative in float32);
only the kernel differs. On CPUs whose bf16 units (AMX) run dilated convolutions slowly at large
rates (oneDNN, PyTorch and OpenVINO alike: a 2048→256 convolution on a 64×128 map in bf16 ran
0.5× of fp32 at rate 24 and 0.3× at rate 36), the tap-wise form runs at the
1×1 kernel's speed; ``atrous benchmark --peak`` measures both forms on this machine;
:func:`use_tapwise` switches a model's atrous convolutions in place, and
:func:`atrous.engines.precision.choose_tapwise` says where (bf16 on an AMX CPU).

The module is an ``nn.Conv2d`` with the same parameters, so state dicts, parameter counts and
the output-stride switch (which rewrites ``dilation`` and ``padding``) are unchanged; it traces
and exports with dynamic height and width (``Conv`` + ``Pad`` + ``Slice`` + ``Add``): the shift
pads by the rate and slices, so it is valid when the rate exceeds the map (taps fully in the
padding contribute zeros, as in the dilated convolution).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


class TapwiseConv2d(nn.Conv2d):
    """A 3×3 convolution with ``padding == dilation``, computed tap-wise at rates ``≥
    tapwise_min_rate`` (the dilated kernel below).

    Shapes: ``(N, C_in, H, W)`` → ``(N, C_out, H, W)``, as the dilated convolution it replaces.
    """

    tapwise_min_rate: int = 2  # set per convolution by :func:`use_tapwise`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rate = self.dilation[0]
        if rate < self.tapwise_min_rate or not is_tapwise_compatible(self):
            return super().forward(x)
        out = _shifted_sum(x, self.weight, rate) if _tracing() else _region_sum(x, self.weight, rate)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


def _tracing() -> bool:
    """Exporting or tracing: the graph must hold for every height and width."""
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export() or torch.jit.is_tracing()


def _region_sum(x: torch.Tensor, weight: torch.Tensor, rate: int) -> torch.Tensor:
    """Eager form: per kernel row, one 1×1 convolution (``3·C_out`` filters) over the input rows
    that row's taps reach, each tap added into the output region it covers; taps that lie wholly
    in the padding are skipped (no work where the dilated kernel multiplies zeros)."""
    height, width = x.shape[-2:]
    out_channels = weight.shape[0]
    out = x.new_zeros(x.shape[0], out_channels, height, width).contiguous(memory_format=_layout(x))
    for ty in range(3):
        dy = (ty - 1) * rate
        if abs(dy) >= height:
            continue
        rows = weight[:, :, ty].permute(2, 0, 1).reshape(3 * out_channels, weight.shape[1], 1, 1)
        taps = F.conv2d(x[:, :, max(dy, 0) : height + min(dy, 0)], rows)  # (N, 3·C_out, H - |dy|, W)
        oy0, oy1 = max(-dy, 0), height - max(dy, 0)
        for tx in range(3):
            dx = (tx - 1) * rate
            if abs(dx) >= width:
                continue
            ox0, ox1 = max(-dx, 0), width - max(dx, 0)
            out[:, :, oy0:oy1, ox0:ox1] += taps[:, tx * out_channels : (tx + 1) * out_channels, :, ox0 + dx : ox1 + dx]
    return out


def _shifted_sum(x: torch.Tensor, weight: torch.Tensor, rate: int) -> torch.Tensor:
    """Traced form, valid for any height and width: one 1×1 convolution with ``9·C_out``
    filters, the tap maps padded by the rate once, and each tap's shift taken as a slice."""
    height, width = x.shape[-2:]
    out_channels = weight.shape[0]
    # (C_out, C_in, 3, 3) → (9·C_out, C_in, 1, 1), tap-major: rows [k·C_out, (k+1)·C_out) are tap k.
    taps = F.conv2d(x, weight.permute(2, 3, 0, 1).reshape(9 * out_channels, weight.shape[1], 1, 1))
    padded = F.pad(taps, (rate, rate, rate, rate))
    out = None
    for k in range(9):
        ty, tx = divmod(k, 3)  # the tap's offset is ((ty - 1)·r, (tx - 1)·r)
        tap = padded[:, k * out_channels : (k + 1) * out_channels,
                     ty * rate : ty * rate + height, tx * rate : tx * rate + width]
        out = tap if out is None else out + tap
    return out


def _layout(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format


def is_tapwise_compatible(conv: nn.Module) -> bool:
    """A plain ``nn.Conv2d`` (not a subclass with its own forward): 3×3, stride 1, ungrouped,
    zero padding equal to its rate."""
    return (
        type(conv) in (nn.Conv2d, TapwiseConv2d)
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and conv.dilation[0] == conv.dilation[1] == conv.padding[0] == conv.padding[1]
        and conv.dilation[0] >= 1
    )


# A rule: ``(min_in_channels, min_rate)`` pairs, first match wins; a convolution with at least
# ``min_in_channels`` inputs runs tap-wise from ``min_rate`` on.
TapwiseRule = tuple[tuple[int, int], ...]


def use_tapwise(model: nn.Module, rule: TapwiseRule | None) -> int:
    """Compute ``model``'s atrous 3×3 convolutions tap-wise where ``rule`` says (in place).

    Every plain 3×3 convolution padded by its rate becomes a :class:`TapwiseConv2d` that
    remembers the minimum rate the rule gives for its input width and compares its rate at each
    forward, so a later output-stride switch (which changes the rates) keeps the rule.
    ``rule=None`` makes them plain convolutions again. Returns the number of convolutions that
    run tap-wise at their current rate.
    """
    count = 0
    for module in model.modules():
        if not is_tapwise_compatible(module):
            continue
        min_rate = _min_rate(rule, module.in_channels) if rule is not None else None
        if min_rate is None:
            module.__class__ = nn.Conv2d
            module.__dict__.pop("tapwise_min_rate", None)
            continue
        module.__class__ = TapwiseConv2d
        module.tapwise_min_rate = min_rate
        count += module.dilation[0] >= min_rate
    return count


def _min_rate(rule: TapwiseRule, in_channels: int) -> int | None:
    return next((rate for channels, rate in rule if in_channels >= channels), None)


@contextlib.contextmanager
def tapwise_applied(model: nn.Module, rule: TapwiseRule | None) -> Iterator[int]:
    """:func:`use_tapwise` inside the block (e.g. for an export); every convolution's previous
    form is restored on exit. Yields the number of tap-wise convolutions."""
    saved = [(m, m.__class__, m.__dict__.get("tapwise_min_rate")) for m in model.modules() if is_tapwise_compatible(m)]
    try:
        yield use_tapwise(model, rule)
    finally:
        for module, cls, min_rate in saved:
            module.__class__ = cls
            module.__dict__.pop("tapwise_min_rate", None)
            if min_rate is not None:
                module.tapwise_min_rate = min_rate
