"""PyTorch eager (or ``torch.compile``d) as an engine: memory format, autocast precision.

``memory_format="auto"`` is ``channels_last`` on the CPU, where oneDNN's NHWC convolutions are
faster (DenseASPP-121 at 512×1024: 1.24× over NCHW on an AVX-512 machine; see
docs/export_and_benchmarks.md for this machine's table), and the contiguous NCHW layout on CUDA.
``precision`` bf16/fp16 run under ``torch.autocast``; the logits come back as float32. On the
CPU, denormal floats are flushed to zero during the forward pass (``torch.set_flush_denormal``),
as onnxruntime and OpenVINO do: tiny activations otherwise take the processor's slow path
(DenseASPP-121 with random weights ran 2.3x slower here); the setting is restored afterwards.
``compile=True`` wraps the model in ``torch.compile`` (Inductor keeps its compiled kernels in its
own on-disk cache, so a second run compiles faster).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .base import Engine, EngineOptions

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def memory_format(options: EngineOptions, device: torch.device) -> torch.memory_format:
    """The layout the torch engine runs in (``auto``: channels_last on CPU, NCHW elsewhere)."""
    if options.memory_format == "channels_last" or (options.memory_format == "auto" and device.type == "cpu"):
        return torch.channels_last
    return torch.contiguous_format


class TorchEngine(Engine):
    """``model`` run by PyTorch; the model stays a submodule (``.to(device)`` moves it)."""

    name = "torch"

    def __init__(self, model: nn.Module, options: EngineOptions, device: torch.device) -> None:
        super().__init__(
            num_classes=model.num_classes, output_stride=model.output_stride,
            align_corners=getattr(model, "align_corners", False), options=options,
            in_channels=getattr(model, "in_channels", 3),
        )
        self.memory_format = memory_format(options, device)
        self.model = model.to(device=device, memory_format=self.memory_format).eval()
        self.run = torch.compile(self.model) if options.compile else self.model

    @property
    def output_stride(self) -> int:
        return self.model.output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Re-dilate the wrapped model in place (the torch engine can switch at any time)."""
        self.model.set_output_stride(output_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = AUTOCAST[self.options.precision]
        autocast = torch.autocast(x.device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast, flush_denormals(x.device):
            logits = self.run(x.contiguous(memory_format=self.memory_format))
        return logits.float().contiguous()


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
