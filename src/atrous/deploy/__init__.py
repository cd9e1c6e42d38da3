"""Deployment: export (ONNX, TorchScript, ExportedProgram), BatchNorm folding and benchmarks.

Imports without Lightning; ONNX export needs the ``export`` extra (onnx, onnxscript, onnxruntime).
"""

from .batchnorm import FoldPlan, count_batchnorms, fold_batchnorm, plan_batchnorm_folding
from .export import FORMATS, ExportResult, export_checkpoint, export_model, run_artifact

__all__ = [
    "FORMATS",
    "ExportResult",
    "FoldPlan",
    "count_batchnorms",
    "export_checkpoint",
    "export_model",
    "fold_batchnorm",
    "plan_batchnorm_folding",
    "run_artifact",
]
