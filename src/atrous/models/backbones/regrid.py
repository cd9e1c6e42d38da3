"""atrous' own output-stride rule for any network of convolutions and pools (timm models).

Measured, not declared: one forward pass at output stride 32 with hooks records the stride of
every convolution's and pool's input. A layer whose input is already at the target stride ``s``
(or denser in the strided network than it will be) keeps stride 1, and every kernel tap is
spread by the rate ``r = input stride / s`` (DeepLabv3 §3.1): dilation ``d·r``, and the
strided layer's own padding scaled by ``r`` *on each side separately*. Keeping the sides apart
is what generic "stride → dilation" patches miss: ConvNeXt's 2×2 downsampling pads nothing on
the left, TensorFlow-style 'same' padding pads more on the right; a centred padding shifts the
features off the sampling grid. Average pools (which have no dilation in PyTorch) become a
dilated depthwise sum divided by the count of valid pixels.

The result is verified, never assumed: :mod:`.grid_check` compares it with the strided network
on the sampling grid, and :mod:`.timm_backbone` refuses a network it cannot prove.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError

PROBE_SIZE = 64  # a square input whose every stride-32 map is 2×2: every strided layer sees an even size


@dataclass(frozen=True)
class Geometry:
    """A layer's kernel geometry in the strided network, per axis (height, width)."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    left: tuple[int, int]  # padding before (top, left) for the input size it was measured on
    input_stride: int


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _is_dynamic_same(module: nn.Module) -> bool:
    """timm's TensorFlow-style 'SAME' layers pad in ``forward`` (Conv2dSame, MaxPool2dSame, ...)."""
    return type(module).__name__.endswith("Same") or bool(getattr(module, "same_pad", False))


def _left_padding(module: nn.Module, size: tuple[int, int], kernel, stride, dilation) -> tuple[int, int]:
    if _is_dynamic_same(module):  # timm.layers.padding.get_same_padding, before half
        total = [max((math.ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)
                 for n, k, s, d in zip(size, kernel, stride, dilation, strict=True)]
        return (total[0] // 2, total[1] // 2)
    padding = module.padding
    if isinstance(padding, str):  # 'same' (stride 1) or 'valid'
        if padding == "valid":
            return (0, 0)
        return tuple((d * (k - 1)) // 2 for k, d in zip(kernel, dilation, strict=True))  # type: ignore[return-value]
    return _pair(padding)


def measure_geometry(net: nn.Module, in_channels: int) -> dict[str, Geometry]:
    """The geometry of every convolution and pool ``net`` runs, by module name (one forward pass)."""
    found: dict[str, Geometry] = {}
    hooks = []

    def record(name):
        def hook(module, args):
            h, w = args[0].shape[-2:]
            if PROBE_SIZE % h or PROBE_SIZE % w or PROBE_SIZE // h != PROBE_SIZE // w:
                raise ConfigError(f"layer {name} sees a {h}×{w} map of a {PROBE_SIZE}² input: not a stride grid")
            kernel, stride = _pair(module.kernel_size), _pair(module.stride if module.stride is not None else module.kernel_size)
            dilation = _pair(getattr(module, "dilation", 1))
            geometry = Geometry(kernel, stride, dilation, _left_padding(module, (h, w), kernel, stride, dilation), PROBE_SIZE // h)
            if found.setdefault(name, geometry) != geometry:
                raise ConfigError(f"layer {name} runs at two strides: atrous cannot dilate a shared layer")
        return hook

    for name, module in net.named_modules():
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            hooks.append(module.register_forward_pre_hook(record(name)))
    try:
        with torch.no_grad():
            was_training = net.training
            net.eval()
            net(torch.zeros(1, in_channels, PROBE_SIZE, PROBE_SIZE))
            net.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return found


def _pads(geometry: Geometry, rate: int) -> tuple[int, int, int, int]:
    """F.pad order (left, right, top, bottom): the strided layer's sides, each times ``rate``."""
    (kh, kw), (dh, dw), (lh, lw) = geometry.kernel, geometry.dilation, geometry.left
    return (lw * rate, (dw * (kw - 1) - lw) * rate, lh * rate, (dh * (kh - 1) - lh) * rate)


class RegriddedConv2d(nn.Conv2d):
    """A convolution run at stride 1 with explicit per-side padding (same parameters and keys)."""

    pads: tuple[int, int, int, int] = (0, 0, 0, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, self.pads), self.weight, self.bias, 1, 0, self.dilation, self.groups)


class DilatedMaxPool2d(nn.Module):
    """Max pooling at stride 1 with dilated taps and per-side padding (−inf)."""

    def __init__(self, kernel: tuple[int, int], dilation: tuple[int, int], pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.kernel, self.dilation, self.pads = kernel, dilation, pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.pad(x, self.pads, value=-math.inf), self.kernel, 1, 0, self.dilation)


class DilatedAvgPool2d(nn.Module):
    """Average pooling at stride 1 with dilated taps: a depthwise sum over the valid pixels of
    each window divided by their count (``count_include_pad=False``) or by the window size."""

    def __init__(self, kernel: tuple[int, int], dilation: tuple[int, int], pads: tuple[int, int, int, int],
                 count_include_pad: bool) -> None:
        super().__init__()
        self.kernel, self.dilation, self.pads, self.count_include_pad = kernel, dilation, pads, count_include_pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        ones = x.new_ones(c, 1, *self.kernel)
        total = F.conv2d(F.pad(x, self.pads), ones, None, 1, 0, self.dilation, c)
        if self.count_include_pad:
            return total / (self.kernel[0] * self.kernel[1])
        valid = F.pad(x.new_ones(1, 1, *x.shape[-2:]), self.pads)
        count = F.conv2d(valid, ones[:1], None, 1, 0, self.dilation)
        return total / count


def _pad_input(pads: tuple[int, int, int, int], module: nn.Module, args: tuple) -> tuple:
    return (F.pad(args[0], pads), *args[1:])


def _prepadded(conv: nn.Conv2d, dilation: tuple[int, int], pads: tuple[int, int, int, int]) -> nn.Conv2d:
    """A convolution subclass that computes its own weights (timm's weight-standardised
    ``StdConv2d``, ``ScaledStdConv2d``) keeps its class: stride 1, no padding of its own, the
    dilation set, and its input padded per side by a forward pre-hook."""
    if _is_dynamic_same(conv) or conv.padding_mode != "zeros":
        raise ConfigError(f"{type(conv).__name__} pads in its own way; atrous cannot dilate it")
    conv.stride, conv.padding, conv.dilation = (1, 1), (0, 0), dilation
    conv.register_forward_pre_hook(functools.partial(_pad_input, pads))
    return conv


def _replacement(module: nn.Module, geometry: Geometry, rate: int) -> nn.Module:
    pads = _pads(geometry, rate)
    dilation = (geometry.dilation[0] * rate, geometry.dilation[1] * rate)
    if isinstance(module, nn.Conv2d):
        if type(module) is not nn.Conv2d and type(module).__name__ != "Conv2dSame":
            return _prepadded(module, dilation, pads)
        if module.padding_mode != "zeros":
            raise ConfigError(f"a convolution pads with {module.padding_mode!r}; atrous dilates zero-padded convolutions only")
        new = RegriddedConv2d(module.in_channels, module.out_channels, module.kernel_size, dilation=dilation,
                              groups=module.groups, bias=module.bias is not None)
        new.load_state_dict(module.state_dict())
        new.pads = pads
        return new
    if isinstance(module, nn.MaxPool2d):
        return DilatedMaxPool2d(geometry.kernel, dilation, pads)
    return DilatedAvgPool2d(geometry.kernel, dilation, pads, bool(module.count_include_pad) and not _is_dynamic_same(module))


def regrid(net: nn.Module, geometry: dict[str, Geometry], output_stride: int) -> int:
    """Dilate ``net`` (built at output stride 32, measured by :func:`measure_geometry`) to
    ``output_stride`` in place; returns the number of layers changed."""
    changed = 0
    for name, g in geometry.items():
        rate = g.input_stride // output_stride
        if rate < 1 or (rate == 1 and g.stride == (1, 1)):
            continue  # before the target stride: unchanged
        parent_name, _, child = name.rpartition(".")
        parent = net.get_submodule(parent_name)
        setattr(parent, child, _replacement(getattr(parent, child), g, rate))
        changed += 1
    return changed
