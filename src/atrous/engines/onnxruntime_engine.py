"""The ``onnxruntime`` and ``tensorrt`` engines: the model's ONNX export
(:func:`atrous.engines.export.export_model`, dynamic batch, height and width) in an onnxruntime
``InferenceSession``.

* ``onnxruntime``: all graph optimisations; the CPU provider, or CUDA's with ``--device cuda`` and
  ``onnxruntime-gpu``. fp32, or int8 from ``atrous quantize`` (static QDQ).
* ``tensorrt``: onnxruntime's ``TensorrtExecutionProvider`` (``onnxruntime-gpu`` built with
  TensorRT, a CUDA device), fp32 or fp16, its engine cache inside the cache entry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DeviceError, require_extra
from .base import Engine, EngineOptions, engine_threads


class OnnxRuntimeEngine(Engine):
    """An ONNX file in an onnxruntime ``InferenceSession``."""

    name = "onnxruntime"

    def __init__(self, path: Path, *, providers: list[Any], name: str = "onnxruntime", **info: Any) -> None:
        super().__init__(**info)
        self.name = name  # onnxruntime, or tensorrt (onnxruntime's TensorRT provider)
        ort = require_extra("onnxruntime", "export", "the onnxruntime engine")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session_options.intra_op_num_threads = engine_threads()
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


def open_engine(source: Path, options: EngineOptions, device: torch.device, info: dict[str, Any], *,
                cache_folder: Path | None) -> OnnxRuntimeEngine:
    """The ONNX file ``source`` in a session of ``options.engine``'s providers; TensorRT keeps its
    engines in ``cache_folder/tensorrt``."""
    trt_cache = cache_folder / "tensorrt" if cache_folder is not None and options.engine == "tensorrt" else None
    if trt_cache is not None:
        trt_cache.mkdir(exist_ok=True)
    providers = onnxruntime_providers(options, device, trt_cache)
    return OnnxRuntimeEngine(source, providers=providers, name=options.engine, **info)


def quantize_int8(onnx_path: Path, images: list[torch.Tensor], folder: Path) -> dict[str, str]:
    """onnxruntime's static quantizer on ``onnx_path`` (QDQ format, per-channel int8 weights, uint8
    activations, min-max calibration over ``images``), after ``quant_pre_process``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .export import INPUT_NAME

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self.items, None)
            return None if x is None else {INPUT_NAME: x.numpy()}

    prepared = folder / "model_prepared.onnx"
    quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # per-channel axis notes on every BatchNorm weight it leaves in float
    try:
        quantize_static(
            str(prepared), str(folder / "model_int8.onnx"), Reader(), quant_format=QuantFormat.QDQ,
            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        )  # min-max calibration keeps two scalars per tensor and image (ReduceMin/ReduceMax outputs)
    finally:
        root.setLevel(level)
    prepared.unlink()
    return {"int8": "model_int8.onnx"}
