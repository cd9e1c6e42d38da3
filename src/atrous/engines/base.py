"""The engine contract: a segmentor behind one interface, whatever runs it.

An engine maps a normalised float32 batch ``(N, 3, h, w)`` (on the engine's device) to logits
``(N, K, h, w)``, exactly like :class:`atrous.models.Segmentor`, so every test-time strategy of
:mod:`atrous.evaluation.inference` (scales, flips, sliding windows) and the evaluation step of
``atrous validate|test`` run on it unchanged. It is an ``nn.Module`` without parameters of its
own (Lightning and ``.eval()`` treat it like a model) and carries what the strategies read from a
model: ``num_classes``, ``output_stride``, ``align_corners``.

The engine owns the output stride at inference: it is built at
:attr:`EngineOptions.output_stride` (default: the model's) and runs at it — the torch engine on a
re-dilated copy of the model, an exported engine from an export at that stride (part of its cache
key). ``--output-stride 8`` works with every engine because every command gives it at build time.

Which engines exist and what each supports is :mod:`atrous.engines.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..models.segmentor import check_image_size
from .choices import MEMORY_FORMATS, PRECISIONS
from .registry import ENGINES, QUANTIZE_ENGINES, engine_spec


def engine_threads() -> int:
    """The threads an engine's library may use: torch's setting (``--threads``, a DataLoader
    worker's 1)."""
    return max(1, torch.get_num_threads())


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
    compile_backend: str = "inductor"  # torch.compile's backend with compile (aot_eager: traced, no code generation)
    precision_reason: str | None = None  # why build_engine resolved --precision auto as it did

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise InputError(f"--engine {self.engine}: unknown engine; choose from {list(ENGINES)}")
        spec = engine_spec(self.engine)
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision}: unknown precision; choose from {list(PRECISIONS)}")
        if self.memory_format not in MEMORY_FORMATS:
            raise InputError(f"--memory-format {self.memory_format}: choose from {list(MEMORY_FORMATS)}")
        if self.precision == "auto" and self.quantized is not None:  # the quantized model is int8
            object.__setattr__(self, "precision", "int8")
        if spec.exports and (self.compile or self.memory_format != "auto"):
            runs_model = [name for name, other in ENGINES.items() if not other.exports]
            raise InputError(f"--compile and --memory-format apply to --engine {'/'.join(runs_model)}, not {self.engine}")
        if self.precision == "int8" and self.quantized is None:
            raise InputError(
                "--precision int8 runs a quantized model: make one with `atrous quantize --checkpoint CKPT "
                "--engine openvino --output DIR`, then pass --engine openvino --quantized DIR"
            )
        if self.quantized is not None and self.precision != "int8":
            raise InputError(f"--quantized {self.quantized} is an int8 model: pass --precision int8 with it")
        if self.precision != "auto" and self.precision not in spec.precisions:
            hint = (f"; int8 needs --engine {' or '.join(QUANTIZE_ENGINES)} and atrous quantize"
                    if self.precision == "int8" else "")
            raise InputError(f"--engine {self.engine} runs {'/'.join(spec.precisions)}, "
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

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse what the exported graph cannot take, with the model's own wording."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a batch (N, {self.in_channels}, H, W), got {tuple(x.shape)}")
        check_image_size(int(x.shape[-2]), int(x.shape[-1]), self._output_stride)

    def extra_repr(self) -> str:
        return f"{self.options.describe()}, classes={self.num_classes}, output_stride={self._output_stride}"
