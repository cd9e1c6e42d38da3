"""``--precision auto``: the fastest precision whose accuracy cost is known to be negligible, for
an engine on a device.

bf16 keeps fp32's exponent range with an 8-bit mantissa; segmentation labels are an argmax over
logits, and bf16 inference changes few of them (docs/engines.md gives the measured label agreement
and mIoU). It is chosen only where the hardware computes it natively, because elsewhere it is
emulated and slower than fp32:

- on the CPU, for the engines whose record lists ``cpu`` in ``auto_bf16``
  (:mod:`atrous.engines.registry`: torch's autocast, OpenVINO's ``INFERENCE_PRECISION_HINT``): bf16
  where the processor has AMX or AVX512-BF16 (:mod:`atrous.hardware`), fp32 otherwise;
- on CUDA, for those listing ``cuda`` (torch): bf16 where the GPU computes it (Ampere and later),
  fp32 otherwise;
- every other engine (onnxruntime, TensorRT): fp32 (their reduced precisions are explicit choices).

Training (``train.precision: auto``, :func:`choose_training_precision`) follows the same rule with
Lightning's mixed precisions.

int8 is never chosen automatically: it needs a calibrated model (``atrous quantize``) and its
report; ``auto`` with ``--quantized DIR`` runs that int8 model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hardware import CpuFeatures, cpu_features
from ..models.tapwise import TapwiseRule
from .registry import ENGINES, engine_spec

AUTO = "auto"


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``auto`` resolved to and why, e.g. ``bf16`` because ``this CPU has AMX (bf16, int8)``."""

    precision: str
    reason: str

    def describe(self, option: str = "--precision") -> str:
        """One line for the user, e.g. ``--precision auto: bf16 (this CPU has AMX (bf16, int8))``."""
        return f"{option} auto: {self.precision} ({self.reason})"


def choose_precision(engine: str, device: torch.device, features: CpuFeatures | None = None) -> PrecisionChoice:
    """The precision ``auto`` means for ``engine`` on ``device`` (``features``: this CPU's, by default)."""
    bf16 = device.type in engine_spec(engine).auto_bf16
    if device.type == "cuda":
        if bf16 and torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", f"{torch.cuda.get_device_name(device)} computes bf16")
        return PrecisionChoice("fp32", f"the {engine} engine on this GPU")
    if not bf16:
        return PrecisionChoice("fp32", f"the {engine} engine runs fp32 on the CPU")
    features = features if features is not None else cpu_features()
    if features.fast_bf16:
        return PrecisionChoice("bf16", f"this CPU has {features.describe()}")
    return PrecisionChoice("fp32", f"this CPU has {features.describe()}: bf16 would be slower")


# Lightning's names of the training precisions ``train.precision: auto`` chooses from.
TRAINING_PRECISIONS = {"bf16": "bf16-mixed", "fp16": "16-mixed", "fp32": "32-true"}


def choose_training_precision(on_cuda: bool, features: CpuFeatures | None = None) -> PrecisionChoice:
    """What ``train.precision: auto`` means: Lightning's ``bf16-mixed`` (weights and optimizer
    state in fp32, convolutions in bf16) where the hardware computes bf16 natively, ``16-mixed``
    on GPUs without bf16 (fp16 with loss scaling), ``32-true`` on CPUs without a bf16 unit."""
    if on_cuda:
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice(TRAINING_PRECISIONS["bf16"], "this GPU computes bf16")
        return PrecisionChoice(TRAINING_PRECISIONS["fp16"], "this GPU has no bf16: fp16 with loss scaling")
    features = features if features is not None else cpu_features()
    if features.fast_bf16:
        return PrecisionChoice(TRAINING_PRECISIONS["bf16"], f"this CPU has {features.describe()}")
    return PrecisionChoice(TRAINING_PRECISIONS["fp32"], f"this CPU has {features.describe()}: bf16 would be slower")


# Where AMX runs bf16 atrous convolutions slowly, they are computed tap-wise (models/tapwise.py),
# per engine. Measured side by side, one thread, bf16, ratio to the fp32 dilated convolution
# (dilated → tap-wise), PyTorch: 2048→256 on 64×128: rate 6 1.7 → 3.8, 12 1.1 → 3.9, 24 0.5 → 4.0;
# on 32×64: rate 6 1.2 → 2.1; 256→64 (DenseASPP's layers) on 64×128: rate 6 2.7 → 2.0, 12 1.9 → 1.9,
# 24 0.85 → 1.9; the backbones' rates 2 and 4 stay dilated (7–8 → 2). OpenVINO's bf16 kernels
# handle the narrow layers well (DenseASPP-121 in bf16: 6.3× fp32 dilated, 4.4× tap-wise) and only
# ASPP's wide ones gain (DeepLabV3-R50: 1.6× → 4.9×). docs/engines.md has the tables.
# The rules live in the engines' records (registry.py: ``amx_bf16_tapwise``).
TAPWISE_RULES: dict[str, TapwiseRule] = {name: spec.amx_bf16_tapwise for name, spec in ENGINES.items()
                                         if spec.amx_bf16_tapwise is not None}


def choose_tapwise(engine: str, device: torch.device, precision: str,
                   features: CpuFeatures | None = None) -> TapwiseRule | None:
    """Which atrous convolutions ``engine`` computes tap-wise: on a CPU with AMX in bf16, the
    wide ones (ASPP's, on 2048 channels) from rate 6 and, in PyTorch, the rest from rate 18;
    none elsewhere (fp32, GPUs and CPUs without AMX run the dilated kernel at full speed)."""
    if device.type != "cpu" or precision != "bf16" or engine not in TAPWISE_RULES:
        return None
    features = features if features is not None else cpu_features()
    return TAPWISE_RULES[engine] if features.amx_bf16 else None
