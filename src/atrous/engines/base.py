"""The engine contract: a segmentor behind one interface, whatever runs it.

An engine maps a normalised float32 batch ``(N, 3, h, w)`` (on the engine's device) to logits
``(N, K, h, w)``, exactly like :class:`atrous.models.Segmentor`, so every test-time strategy of
:mod:`atrous.evaluation.inference` (scales, flips, sliding windows) and the evaluation step of
``atrous validate|test`` run on it unchanged. It is an ``nn.Module`` without parameters of its
own (Lightning and ``.eval()`` treat it like a model) and carries what the strategies read from a
model: ``num_classes``, ``output_stride``, ``align_corners``.

The output stride of an exported engine is fixed when it is built
(:class:`EngineOptions.output_stride`, part of its cache key): ``set_output_stride`` to another
stride raises :class:`~atrous.errors.InputError` naming the way out, so ``--output-stride 8``
works with every engine when given at build time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from .choices import ENGINE_PRECISIONS, ENGINES, MEMORY_FORMATS, PRECISIONS


@dataclass(frozen=True)
class EngineOptions:
    """How to run a segmentor: the ``--engine``/``--precision``/``--compile``/``--memory-format``
    options of ``atrous predict|validate|test|benchmark``.

    Exported graphs keep batch, height and width dynamic; OpenVINO compiles each input size it
    meets once (a sliding ``--window`` means one size) and caches the compiled blob on disk.
    ``quantized``: the folder ``atrous quantize`` wrote (needed for int8).
    ``cache_dir``: where exported engines are kept (``None``: :func:`atrous.engines.cache.default_cache_dir`).
    """

    engine: str = "torch"
    precision: str = "fp32"  # or auto: resolved by build_engine (atrous.engines.precision)
    compile: bool = False
    memory_format: str = "auto"
    output_stride: int | None = None
    quantized: Path | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    precision_reason: str | None = None  # why build_engine resolved --precision auto as it did

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine}: unknown engine; choose from {list(ENGINES)}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision}: unknown precision; choose from {list(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise InputError(f"--memory-format {self.memory_format}: choose from {list(MEMORY_FORMATS)}")
        if self.precision == "auto" and self.quantized is not None:  # the quantized model is int8
            object.__setattr__(self, "precision", "int8")
        if self.engine != "torch" and (self.compile or self.memory_format != "auto"):
            raise InputError(f"--compile and --memory-format apply to --engine torch, not {self.engine}")
        if self.precision == "int8" and self.quantized is None:
            raise InputError(
                "--precision int8 runs a quantized model: make one with `atrous quantize --checkpoint CKPT "
                "--engine openvino --output DIR`, then pass --engine openvino --quantized DIR"
            )
        if self.quantized is not None and self.precision != "int8":
            raise InputError(f"--quantized {self.quantized} is an int8 model: pass --precision int8 with it")
        if self.precision != "auto" and self.precision not in ENGINE_PRECISIONS[self.engine]:
            hint = "; int8 needs --engine openvino or onnxruntime and atrous quantize" if self.precision == "int8" else ""
            raise InputError(f"--engine {self.engine} runs {'/'.join(ENGINE_PRECISIONS[self.engine])}, "
                             f"not --precision {self.precision}{hint}")

    def describe(self) -> str:
        """One line, e.g. ``openvino fp32``, ``torch fp32 compiled`` or ``torch bf16 (--precision
        auto: this CPU has AMX (bf16, int8))``."""
        parts = [self.engine, self.precision]
        if self.compile:
            parts.append("compiled")
        if self.precision_reason:
            parts.append(f"(--precision auto: {self.precision_reason})")
        return " ".join(parts)


class Engine(nn.Module):
    """Base of every engine: ``forward(x (N, 3, h, w)) → logits (N, K, h, w)`` float32."""

    name: str = "engine"

    def __init__(self, *, num_classes: int, output_stride: int, align_corners: bool, options: EngineOptions,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)  # image channels (the model's in_channels)
        self._output_stride = int(output_stride)
        self.align_corners = bool(align_corners)
        self.options = options

    @property
    def output_stride(self) -> int:
        return self._output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """Exported engines run at the stride they were built with; another one needs a rebuild."""
        if output_stride != self._output_stride:
            raise InputError(
                f"the {self.name} engine was built at output stride {self._output_stride}; pass "
                f"--output-stride {output_stride} when building it (atrous re-exports at that stride), "
                f"or use --engine torch"
            )

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse what the exported graph cannot take, with the model's own wording."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a batch (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if min(x.shape[-2:]) < self._output_stride:
            raise InputError(
                f"input of {x.shape[-2]}x{x.shape[-1]} pixels is smaller than the output stride {self._output_stride}"
            )

    def extra_repr(self) -> str:
        return f"{self.options.describe()}, classes={self.num_classes}, output_stride={self._output_stride}"
