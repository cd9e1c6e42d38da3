"""Run a segmentor fast where it is deployed: one engine interface over PyTorch (eager,
channels_last, ``torch.compile``, autocast), onnxruntime, OpenVINO and TensorRT, an on-disk
engine cache, int8 quantization, and the exports (ONNX, TorchScript, ExportedProgram) and
BatchNorm folding they build on.

Imports without Lightning; onnxruntime comes with the ``export`` extra, OpenVINO and NNCF with
the ``openvino`` extra (``pip install 'atrous[openvino]'``).
"""

from .base import ENGINES, MEMORY_FORMATS, PRECISIONS, Engine, EngineOptions
from .batchnorm import FoldPlan, count_batchnorms, fold_batchnorm, plan_batchnorm_folding
from .build import build_engine
from .export import FORMATS, ExportResult, export_checkpoint, export_model, run_artifact
from .precision import PrecisionChoice, choose_precision

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
