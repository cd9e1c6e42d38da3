"""What the benchmarks' command lines offer, importable without torch: the phases of ``atrous
benchmark``, the engine variants of ``--engines`` and the load of ``atrous benchmark-serve``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PHASES = ("inference", "train")


@dataclass(frozen=True)
class Variant:
    """An engine configuration of ``--engines``; ``options`` ``None``: the plain model, ``model(x)``."""

    name: str
    options: dict[str, Any] | None
    devices: tuple[str, ...] = ("cpu", "cuda")


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("eager", None),  # model(x) as PyTorch runs it: NCHW, denormals as they come
    Variant("torch", {"engine": "torch"}),  # the torch engine's defaults (channels_last, flushed denormals on CPU)
    Variant("torch-nchw", {"engine": "torch", "memory_format": "contiguous"}),
    Variant("torch-compile", {"engine": "torch", "memory_format": "channels_last", "compile": True}),
    Variant("torch-bf16", {"engine": "torch", "precision": "bf16", "memory_format": "channels_last"}),
    Variant("torch-fp16", {"engine": "torch", "precision": "fp16", "memory_format": "channels_last"}, ("cuda",)),
    Variant("onnxruntime", {"engine": "onnxruntime"}),
    Variant("onnxruntime-int8", {"engine": "onnxruntime", "precision": "int8"}, ("cpu",)),
    Variant("openvino", {"engine": "openvino"}, ("cpu",)),
    Variant("openvino-bf16", {"engine": "openvino", "precision": "bf16"}, ("cpu",)),
    Variant("openvino-int8", {"engine": "openvino", "precision": "int8"}, ("cpu",)),
    Variant("tensorrt", {"engine": "tensorrt"}, ("cuda",)),
    Variant("tensorrt-fp16", {"engine": "tensorrt", "precision": "fp16"}, ("cuda",)),
)}
DEFAULTS = {"cpu": ("eager", "torch", "onnxruntime", "openvino", "openvino-int8"),
            "cuda": ("eager", "torch", "torch-compile", "torch-bf16", "torch-fp16")}
# Added to the CPU's defaults where the processor computes bf16 natively (atrous.hardware).
BF16_CPU_DEFAULTS = ("torch-bf16", "openvino-bf16")


@dataclass(frozen=True)
class LoadSettings:
    """How much load: ``requests`` per concurrency level, ``image_size`` (H, W) of the image sent."""

    requests: int = 300
    concurrency: tuple[int, ...] = (1, 4, 16)
    image_size: tuple[int, int] = (256, 512)
    max_batch: int = 8
    max_wait: float = 0.01
    warmup: int = 4
    timeout: float = 120.0  # seconds one request may take
