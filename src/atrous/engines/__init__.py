"""Run a segmentor fast where it is deployed: one engine interface over PyTorch (eager,
channels_last, ``torch.compile``, autocast), onnxruntime, OpenVINO and TensorRT, an on-disk
engine cache, int8 quantization, and the exports (ONNX, TorchScript, ExportedProgram) and
BatchNorm folding they build on. The names below import torch on first use.

Imports without Lightning; onnxruntime comes with the ``export`` extra, OpenVINO and NNCF with
the ``openvino`` extra (``pip install "atrous[openvino]"``).
"""

from ..lazy import lazy_attributes
from .choices import ENGINES, EXPORT_FORMATS, MEMORY_FORMATS, PRECISIONS

FORMATS = EXPORT_FORMATS
__all__ = [
    "ENGINES",
    "FORMATS",
    "MEMORY_FORMATS",
    "PRECISIONS",
    "Engine",
    "EngineOptions",
    "ExportResult",
    "FoldPlan",
    "PrecisionChoice",
    "build_engine",
    "choose_precision",
    "count_batchnorms",
    "export_checkpoint",
    "export_model",
    "fold_batchnorm",
    "plan_batchnorm_folding",
    "run_artifact",
]
__getattr__, __dir__ = lazy_attributes(__name__, {
    "Engine": ".base", "EngineOptions": ".base", "build_engine": ".build",
    "PrecisionChoice": ".precision", "choose_precision": ".precision",
    "FoldPlan": ".batchnorm", "count_batchnorms": ".batchnorm", "fold_batchnorm": ".batchnorm",
    "plan_batchnorm_folding": ".batchnorm",
    "ExportResult": ".export", "export_checkpoint": ".export", "export_model": ".export", "run_artifact": ".export",
})
