"""Dilated = strided on the sampling grid: the proof every dilated backbone must pass.

A network dilated to output stride ``s`` computes the strided network's features densely: its
last map sampled every ``32 / s`` pixels *is* the output-stride-32 map. :func:`grid_agreement`
measures this in float64 on weights drawn so that no layer is an identity (timm zero-initialises
the last BatchNorm of residual units and ConvNeXt's layer scale starts at 1e-6: with those
weights a misaligned residual branch would be invisible).

Global pooling (squeeze-and-excitation gates, split attention, image-level means) averages the
dense map over more pixels than the strided one. During the dilated run every global spatial
mean therefore reads the strided network's sampling grid only, so such networks are compared
exactly too; a global operation of another kind (softmax attention over positions) leaves
them "pooling: not comparable".
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
EXACT = 1e-10  # relative, float64: the same products summed in another order
_MEANS = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.mean.default}
_POOLS = {aten._adaptive_avg_pool2d.default, aten.adaptive_max_pool2d.default}
_GLOBAL_OTHER = {aten._softmax.default, aten.native_group_norm.default}


def _spatial(x: torch.Tensor, dims) -> bool:
    if x.ndim != 4 or dims is None:
        return False
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted(d % 4 for d in dims) == [2, 3]


class _GlobalOps(TorchDispatchMode):
    """Records the input size of every global spatial reduction (``grid=None``), or makes each
    one read only every k-th pixel, k from the recorded strided sizes."""

    def __init__(self, grid: list[tuple[int, int]] | None = None) -> None:
        super().__init__()
        self.grid, self.sizes, self.other, self.index = grid, [], False, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        x = args[0] if args else None
        is_global = isinstance(x, torch.Tensor) and (
            (func in _MEANS and _spatial(x, args[1] if len(args) > 1 else kwargs.get("dim")))
            or (func in _POOLS and tuple(args[1]) == (1, 1) and x.ndim == 4)
        )
        if func in _GLOBAL_OTHER:
            self.other = True
        if is_global:
            if self.grid is None:
                self.sizes.append(tuple(x.shape[-2:]))
            elif self.index < len(self.grid):
                gh, gw = self.grid[self.index]
                kh, kw = x.shape[-2] // gh, x.shape[-1] // gw
                self.index += 1
                if (kh, kw) != (1, 1):
                    args = (x[..., ::kh, ::kw].contiguous(), *args[1:])
        return func(*args, **kwargs)


@dataclass(frozen=True)
class Agreement:
    """Dilated vs strided on the grid: the largest difference relative to the largest feature."""

    relative_difference: float
    verdict: str  # "exact" | "pooling: not comparable" | "misaligned"
    measured_strides: tuple[int, ...]


def probe_weights(net: nn.Module, seed: int = 0) -> None:
    """Draw weights under which no layer is an identity or a constant (see module docstring)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / fan_in**0.5)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.1)
            else:  # BN / LayerNorm weights, layer scales, gains
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5)
        for name, b in net.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g, dtype=b.dtype) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype) * 0.1)


def grid_agreement(strided: nn.Module, dilated: nn.Module, output_stride: int, *, in_channels: int = 3,
                   size: tuple[int, int] = (64, 96)) -> Agreement:
    """Compare ``dilated`` (at ``output_stride``) with ``strided`` (output stride 32, same
    parameter names) on the grid; both map ``(N, C, H, W)`` to a dict or list of feature maps.
    Neither argument is modified (float64 copies with :func:`probe_weights`)."""
    ref = copy.deepcopy(strided).double().eval()
    probe_weights(ref)
    dense = copy.deepcopy(dilated).double().eval()
    dense.load_state_dict(ref.state_dict())
    x = torch.randn(1, in_channels, *size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with _GlobalOps() as record:
            coarse = _last(ref(x))
        with _GlobalOps([s for s in record.sizes]) as replay:
            features = _values(dense(x))
    fine = features[-1]
    strides = tuple(size[0] // f.shape[-2] for f in features)
    k = 32 // output_stride
    sampled = fine[..., ::k, ::k]
    if sampled.shape != coarse.shape:
        return Agreement(float("inf"), "misaligned", strides)
    diff = ((sampled - coarse).abs().max() / coarse.abs().max().clamp_min(1e-300)).item()
    if diff <= EXACT:
        verdict = "exact"
    elif replay.other or record.other:
        verdict = "pooling: not comparable"
    else:
        verdict = "misaligned"
    return Agreement(diff, verdict, strides)


def _values(out) -> list[torch.Tensor]:
    return list(out.values()) if isinstance(out, dict) else list(out)


def _last(out) -> torch.Tensor:
    return _values(out)[-1]
