"""What the command line offers about engines, importable without torch: the engines, the
precisions each runs, the memory layouts of the torch engine, the export formats and the engines
``atrous quantize`` writes for. The engine modules read them from here."""

ENGINES = ("torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")  # auto: engines/precision.py chooses when building
MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
# What each engine runs: int8 is a model from `atrous quantize`; OpenVINO's bf16/fp16 need a CPU
# that has them (checked when the engine is built).
ENGINE_PRECISIONS = {
    "torch": ("fp32", "bf16", "fp16"),
    "onnxruntime": ("fp32", "int8"),
    "openvino": ("fp32", "bf16", "fp16", "int8"),
    "tensorrt": ("fp32", "fp16"),
}
EXPORT_FORMATS = ("onnx", "torchscript", "exported-program")  # atrous export --format
QUANTIZE_ENGINES = ("openvino", "onnxruntime")  # atrous quantize --engine
