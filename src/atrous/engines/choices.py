"""What the command line offers about engines, importable without torch: the engines and the
precisions each runs (from :mod:`atrous.engines.registry`), the memory layouts of the torch engine,
the export formats and the engines ``atrous quantize`` writes for."""

from .registry import ENGINES as _SPECS
from .registry import QUANTIZE_ENGINES

ENGINES = tuple(_SPECS)
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")  # auto: engines/precision.py chooses when building
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
ENGINE_PRECISIONS = {name: spec.precisions for name, spec in _SPECS.items()}
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")  # atrous export --format

__all__ = ["ENGINES", "ENGINE_PRECISIONS", "EXPORT_FORMATS", "MEMORY_FORMATS", "PRECISIONS", "QUANTIZE_ENGINES"]
