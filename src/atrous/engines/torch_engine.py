"""PyTorch eager (or ``torch.compile``d) as an engine: memory format, autocast precision.

``memory_format="auto"`` is ``channels_last`` on the CPU, where oneDNN's NHWC convolutions are
faster (DenseASPP-121 at 512×1024: 1.24× over NCHW on an AVX-512 machine; see
docs/export_and_benchmarks.md for this machine's table), and the contiguous NCHW layout on CUDA.
``precision`` bf16/fp16 run under ``torch.autocast``; the logits come back as float32. On the
CPU, denormal floats are flushed to zero during the forward pass (``torch.set_flush_denormal``),
as onnxruntime and OpenVINO do: tiny activations otherwise take the processor's slow path
(DenseASPP-121 with random weights ran 2.3x slower here); the setting is restored afterwards.
In bf16 on a CPU with AMX, the large-rate atrous convolutions run tap-wise
(:mod:`atrous.models.tapwise`, chosen by :func:`~atrous.engines.precision.choose_tapwise`).
``compile=True`` wraps the model in ``torch.compile`` (Inductor keeps its compiled kernels in its
own on-disk cache, so a second run compiles faster). :func:`autocast` and :func:`memory_format`
are the engine's rules, shared with the training step of ``atrous benchmark``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.tapwise import use_tapwise
from .base import Engine, EngineOptions
from .precision import choose_tapwise

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``precision``'s dtype on ``device`` (fp32: nothing)."""
    dtype = AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def memory_format(options: EngineOptions, device: torch.device) -> torch.memory_format:
    """The layout the torch engine runs in (``auto``: channels_last on CPU, NCHW elsewhere)."""
    if options.memory_format == "channels_last" or (options.memory_format == "auto" and device.type == "cpu"):
        return torch.channels_last
    return torch.contiguous_format


class TorchEngine(Engine):
    """``model`` run by PyTorch; the model stays a submodule (``.to(device)`` moves it).

    ``model`` maps ``(N, C, h, w)`` to logits; a segmentor gives its ``num_classes``,
    ``output_stride`` and ``align_corners`` (a module without them, such as a benchmark's peer
    network, runs too: 0, 0, False)."""

    name = "torch"

    def __init__(self, model: nn.Module, options: EngineOptions, device: torch.device) -> None:
        super().__init__(
            num_classes=getattr(model, "num_classes", 0), output_stride=getattr(model, "output_stride", 0),
            align_corners=getattr(model, "align_corners", False), options=options,
            in_channels=getattr(model, "in_channels", 3),
        )
        self.memory_format = memory_format(options, device)
        self.model = model.to(device=device, memory_format=self.memory_format).eval()
        # Atrous convolutions tap-wise where this CPU's bf16 dilated kernel is slow (precision.py).
        self.tapwise_convs = use_tapwise(self.model, choose_tapwise("torch", device, options.precision))
        self.run = torch.compile(self.model, backend=options.compile_backend) if options.compile else self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device, self.options.precision), flush_denormals(x.device):
            logits = self.run(x.contiguous(memory_format=self.memory_format))
        return logits.float().contiguous()


def open_engine(source: nn.Module, options: EngineOptions, device: torch.device, info: dict[str, Any], *,
                cache_folder: Path | None = None) -> TorchEngine:
    """The torch engine runs the model ``source`` itself (built at its output stride already)."""
    return TorchEngine(source, options, device)


@contextlib.contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """Flush denormals to zero on the CPU inside the block (PyTorch's default, off, afterwards)."""
    if device.type != "cpu" or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
