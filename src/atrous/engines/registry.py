"""The engines atrous runs a segmentor in: one record each, importable without torch.

Every question about an engine — which precisions it runs, on which devices, which library it
needs and which pip extra installs it, whether it runs the ONNX export or the model itself, which
file it opens, what ``--precision auto`` may choose for it, whether ``atrous quantize`` makes an
int8 model for it — is answered by its :class:`EngineSpec` in :data:`ENGINES`. The command line
reads the names from here (:mod:`atrous.engines.choices`) without importing torch; the code that
builds, loads and quantizes engines (:mod:`atrous.engines.build`, :mod:`atrous.engines.int8`)
calls the functions of the engine's own module, ``atrous.engines.<module>``:

* ``open_engine(source, options, device, info, *, cache_folder)`` → an
  :class:`~atrous.engines.base.Engine`: ``source`` is the model (an engine that runs the model) or
  the file it runs (an exported engine); ``cache_folder`` is the cache entry or quantized folder
  holding that file (``None``: keep no compiled files), where the engine may keep what it compiles;
* ``convert_onnx(onnx_path, folder)`` → ``{"<name>": file}``, for an engine that converts the ONNX
  export into files of its own (a cache entry of its own, named after the engine);
* ``quantize_int8(onnx_path, images, folder)`` → ``{"int8": file}``, for an engine that runs int8.

Adding an engine is adding its record here and its module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class EngineSpec:
    """What atrous knows about one engine."""

    name: str  # --engine NAME
    module: str  # its module, atrous.engines.<module>
    precisions: tuple[str, ...]  # what --precision may ask for; int8 runs a model from atrous quantize
    devices: tuple[str, ...]  # device types it runs on; the first is where --device auto puts it
    package: str | None = None  # the module it imports (None: torch itself)
    extra: str | None = None  # the pip extra that installs that module: pip install "atrous[extra]"
    versions: tuple[str, ...] = ()  # distributions whose versions key its cache entries
    exports: bool = True  # runs the ONNX export, built at one output stride; False: runs the model
    converts: bool = False  # converts the export into files of its own (convert_onnx)
    suffix: str = ".onnx"  # the file it runs
    auto_bf16: tuple[str, ...] = ()  # devices where --precision auto picks bf16 when the hardware computes it
    int8_package: str | None = None  # what quantize_int8 imports (int8 in precisions)
    # Its atrous convolutions computed tap-wise in bf16 on an AMX CPU (models/tapwise.py):
    # (min input channels, min rate) pairs, first match wins; None: never. Measured in docs/engines.md.
    amx_bf16_tapwise: tuple[tuple[int, int], ...] | None = None

    @property
    def quantizes(self) -> bool:
        """Whether ``atrous quantize`` makes int8 models for it."""
        return "int8" in self.precisions

    def implementation(self) -> ModuleType:
        """Its module (imported now: torch and the engine's library come with it)."""
        return importlib.import_module(f"atrous.engines.{self.module}")


ENGINES: dict[str, EngineSpec] = {spec.name: spec for spec in (
    EngineSpec("torch", "torch_engine", ("fp32", "bf16", "fp16"), ("cpu", "cuda"),
               exports=False, suffix="", auto_bf16=("cpu", "cuda"), amx_bf16_tapwise=((1024, 6), (0, 18))),
    EngineSpec("onnxruntime", "onnxruntime_engine", ("fp32", "int8"), ("cpu", "cuda"),
               package="onnxruntime", extra="export", versions=("onnxruntime",),
               int8_package="onnxruntime.quantization"),
    EngineSpec("openvino", "openvino_engine", ("fp32", "bf16", "fp16", "int8"), ("cpu",),
               package="openvino", extra="openvino", versions=("openvino",), converts=True, suffix=".xml",
               auto_bf16=("cpu",), int8_package="nncf", amx_bf16_tapwise=((1024, 6),)),
    EngineSpec("tensorrt", "onnxruntime_engine", ("fp32", "fp16"), ("cuda",),
               package="onnxruntime", extra="export", versions=("onnxruntime-gpu", "onnxruntime")),
)}
QUANTIZE_ENGINES = tuple(name for name, spec in ENGINES.items() if spec.quantizes)  # atrous quantize --engine


def engine_spec(name: str) -> EngineSpec:
    """The record of ``--engine name``; a :class:`KeyError` for an unknown one (options are
    checked against :data:`ENGINES` before, with the user's wording)."""
    return ENGINES[name]
