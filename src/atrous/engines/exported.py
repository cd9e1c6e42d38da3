"""Engines that run an exported graph: onnxruntime, OpenVINO, TensorRT (onnxruntime's provider).

Each is built from the model's ONNX export (:func:`atrous.engines.export.export_model`, dynamic
batch, height and width), kept in the engine cache (:mod:`atrous.engines.cache`):

* ``onnxruntime``: the ONNX file in an ``InferenceSession`` (all graph optimisations; the CPU
  provider, or CUDA's with ``--device cuda`` and ``onnxruntime-gpu``). fp32, or int8 from
  ``atrous quantize``.
* ``openvino``: the ONNX file converted to OpenVINO IR (weights kept in fp32), compiled for the
  CPU with an explicit ``INFERENCE_PRECISION_HINT`` (OpenVINO otherwise picks bf16 on CPUs that
  have it, which would change the numbers silently). fp32, bf16 and fp16 where the CPU supports
  them, or int8 from ``atrous quantize`` (NNCF). A fixed ``shape`` compiles the graph for it;
  otherwise each new input size is compiled once (an LRU of :data:`OPENVINO_SHAPES`): static
  shapes are what OpenVINO's CPU plugin runs fastest. Compiled blobs go to OpenVINO's own cache
  inside the entry (``CACHE_DIR``), so a second process starts fast too; that folder is bounded
  in size, least recently used sizes removed first (:class:`atrous.engines.cache.CompiledBlobs`).
* ``tensorrt``: onnxruntime's ``TensorrtExecutionProvider`` (``onnxruntime-gpu`` built with
  TensorRT, a CUDA device), fp32 or fp16, its engine cache inside the entry.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeviceError, require_extra
from .base import Engine, EngineOptions
from .cache import CompiledBlobs, compiled_cache_bytes

OPENVINO_SHAPES = 8  # compiled input sizes kept per OpenVINO engine
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}
OPENVINO_CAPABILITY = {"bf16": "BF16", "fp16": "FP16"}


def _threads() -> int:
    return max(1, torch.get_num_threads())


class OnnxRuntimeEngine(Engine):
    """An ONNX file in an onnxruntime ``InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, providers: list[Any], name: str = "onnxruntime", **info: Any) -> None:
        super().__init__(**info)
        self.name = name  # onnxruntime, or tensorrt (onnxruntime's TensorRT provider)
        ort = require_extra("onnxruntime", "export", "the onnxruntime engine")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = _threads()
        session_options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), session_options, providers=providers)
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        array = x.detach().float().cpu().contiguous().numpy()
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits).to(x.device)


def onnxruntime_providers(options: EngineOptions, device: torch.device, trt_cache: Path | None = None) -> list[Any]:
    """The execution providers for ``options.engine`` on ``device``; a clear error if missing."""
    ort = require_extra("onnxruntime", "export", "the onnxruntime engine")
    available = ort.get_available_providers()
    if options.engine == "tensorrt":
        if device.type != "cuda" or "TensorrtExecutionProvider" not in available:
            raise DeviceError(
                "--engine tensorrt needs a CUDA device and onnxruntime with TensorRT "
                f"(pip install onnxruntime-gpu, TensorRT libraries); this onnxruntime offers {available}"
            )
        trt = {"device_id": device.index or 0, "trt_fp16_enable": options.precision == "fp16",
               "trt_engine_cache_enable": trt_cache is not None,
               "trt_engine_cache_path": str(trt_cache or "")}
        return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", {"device_id": device.index or 0})]
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise DeviceError(f"--engine onnxruntime --device cuda needs pip install onnxruntime-gpu; this one offers {available}")
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


_CORE: Any = None


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
        self.config = {"INFERENCE_PRECISION_HINT": OPENVINO_HINTS[precision], "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": _threads()}
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
