"""The ``openvino`` engine: the ONNX export converted to OpenVINO IR, compiled for the CPU.

The IR keeps the weights in fp32 and is compiled with an explicit ``INFERENCE_PRECISION_HINT``
(OpenVINO otherwise picks bf16 on CPUs that have it, which would change the numbers silently):
fp32, bf16 and fp16 where the CPU supports them, or int8 from ``atrous quantize`` (NNCF). A fixed
``shape`` compiles the graph for it; otherwise each new input size is compiled once (an LRU of
:data:`OPENVINO_SHAPES`): static shapes are what OpenVINO's CPU plugin runs fastest. Compiled
blobs go to OpenVINO's own cache inside the cache entry (``CACHE_DIR``; bounded in size, least
recently used sizes removed first: :class:`atrous.engines.cache.CompiledBlobs`), so a second process
starts fast too.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeviceError, require_extra
from ..hardware import CpuFeatures, cpu_features
from .base import Engine, EngineOptions, engine_threads
from .cache import CompiledBlobs, compiled_cache_bytes

OPENVINO_SHAPES = 8  # compiled input sizes kept per OpenVINO engine
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}  # int8: inference_hint
OPENVINO_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}


_CORE: Any = None


def inference_hint(precision: str, features: CpuFeatures | None = None) -> str:
    """OpenVINO's ``INFERENCE_PRECISION_HINT`` for ``precision``. For int8, the layers NNCF left
    unquantized (BatchNorm and ReLU of DenseNet's pre-activation layers, the concatenations, the
    upsampling) run in bf16 where the CPU computes it natively, as ``--precision auto`` chooses
    for fp32 models, and in f32 elsewhere."""
    if precision == "int8":
        features = features if features is not None else cpu_features()
        return "bf16" if features.fast_bf16 else "f32"
    return OPENVINO_HINTS[precision]


def openvino_core() -> Any:
    """One ``openvino.Core`` for the process, never released: a Core destroyed while a compiled
    model made by it still exists unloads the CPU plugin under it (a crash when that model is
    freed later, at any garbage collection)."""
    global _CORE
    if _CORE is None:
        _CORE = require_extra("openvino", "openvino", "the OpenVINO engine").Core()
    return _CORE


class OpenVINOEngine(Engine):
    """An OpenVINO IR compiled for the CPU, one compiled model per input size."""

    name = "openvino"

    def __init__(self, xml: Path, *, compiled_cache: Path | None, **info: Any) -> None:
        super().__init__(**info)
        core = openvino_core()
        precision = self.options.precision
        if precision in OPENVINO_CAPABILITY:
            capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
            if OPENVINO_CAPABILITY[precision] not in capabilities:
                raise DeviceError(f"--precision {precision}: this CPU's OpenVINO plugin supports {list(capabilities)} only")
        self.model = core.read_model(str(xml))
        self.config = {"INFERENCE_PRECISION_HINT": inference_hint(precision), "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": engine_threads()}
        self.blobs: CompiledBlobs | None = None
        if compiled_cache is not None:
            self.config["CACHE_DIR"] = str(compiled_cache)
            self.blobs = CompiledBlobs(Path(compiled_cache), compiled_cache_bytes())
        # input size → (compiled model, its infer request); released before the model (__del__)
        self.compiled: OrderedDict[tuple[int, ...], tuple[Any, Any]] = OrderedDict()

    def _request(self, shape: tuple[int, ...]) -> Any:
        if shape in self.compiled:
            self.compiled.move_to_end(shape)
            return self.compiled[shape][1]
        model = self.model.clone()
        model.reshape({model.inputs[0].any_name: list(shape)})
        before = self.blobs.snapshot() if self.blobs is not None else set()
        compiled = openvino_core().compile_model(model, "CPU", self.config)
        if self.blobs is not None:
            self.blobs.used(f"{self.options.precision} {'x'.join(map(str, shape))}", before)
        self.compiled[shape] = (compiled, compiled.create_infer_request())
        if len(self.compiled) > OPENVINO_SHAPES:
            self.compiled.popitem(last=False)
        return self.compiled[shape][1]

    def __del__(self) -> None:
        # Requests before compiled models before the model: OpenVINO objects must not outlive
        # what they were made from (the shared Core outlives them all).
        compiled = self.__dict__.get("compiled")
        if compiled:
            while compiled:
                _, (model, request) = compiled.popitem()
                del request, model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        array = x.detach().float().cpu().contiguous().numpy()
        request = self._request(tuple(array.shape))
        request.infer({0: array})
        logits = np.array(request.get_output_tensor(0).data, copy=True)
        return torch.from_numpy(logits).to(x.device)


def open_engine(source: Path, options: EngineOptions, device: torch.device, info: dict[str, Any], *,
                cache_folder: Path | None) -> OpenVINOEngine:
    """The IR ``source`` compiled for the CPU; compiled blobs kept in ``cache_folder/compiled``."""
    return OpenVINOEngine(source, compiled_cache=cache_folder / "compiled" if cache_folder else None, **info)


def convert_onnx(onnx_path: Path, folder: Path) -> dict[str, str]:
    """Convert an ONNX file to OpenVINO IR in ``folder``, weights kept in fp32."""
    ov = require_extra("openvino", "openvino", "the OpenVINO engine")
    ov.save_model(ov.convert_model(str(onnx_path)), str(folder / "model.xml"), compress_to_fp16=False)
    return {"openvino": "model.xml"}


def quantize_int8(onnx_path: Path, images: list[torch.Tensor], folder: Path) -> dict[str, str]:
    """NNCF's ``nncf.quantize`` on the IR of ``onnx_path`` (``PERFORMANCE`` preset: symmetric int8
    weights and activations, per-channel weights), statistics from ``images``."""
    import nncf
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    dataset = nncf.Dataset([x.numpy() for x in images])
    quantized = nncf.quantize(
        model, dataset, subset_size=len(images), preset=nncf.QuantizationPreset.PERFORMANCE,
        target_device=nncf.TargetDevice.CPU,
    )
    ov.save_model(quantized, str(folder / "model_int8.xml"), compress_to_fp16=False)
    return {"int8": "model_int8.xml"}
