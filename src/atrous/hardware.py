"""What this machine's processor offers for low-precision arithmetic: one reading, used by every
choice of precision (:func:`atrous.engines.precision.choose_precision`, ``train.precision: auto``).

On Linux the kernel's CPU flags (``/proc/cpuinfo``) are read; elsewhere PyTorch's own probe
answers. The units that matter for convolutions:

- **AMX** (``amx_bf16``, ``amx_int8``; Intel Xeon from Sapphire Rapids on): tile matrix units,
  bf16 and int8 convolutions several times faster than fp32.
- **AVX512-BF16** (``avx512_bf16``; Intel Cooper Lake and later, AMD Zen 4 and later): bf16 dot
  products in the vector unit, about twice fp32's rate.
- **VNNI** (``avx512_vnni``, ``avx_vnni``): int8 dot products (what ``atrous quantize`` uses).
- otherwise AVX-512 or AVX2 only: bf16 is emulated there and slower than fp32.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuFeatures:
    """The processor's arithmetic units that decide which precision is fast."""

    amx_bf16: bool = False
    amx_int8: bool = False
    avx512_bf16: bool = False
    vnni: bool = False
    avx512: bool = False
    avx2: bool = False

    @property
    def fast_bf16(self) -> bool:
        """bf16 convolutions run faster than fp32 (AMX or AVX512-BF16)."""
        return self.amx_bf16 or self.avx512_bf16

    @property
    def fast_int8(self) -> bool:
        """int8 convolutions run faster than fp32 (AMX-INT8 or VNNI)."""
        return self.amx_int8 or self.vnni

    def describe(self) -> str:
        """The best unit, e.g. ``AMX (bf16, int8)``, ``AVX512-BF16``, ``AVX2 only``."""
        if self.amx_bf16 or self.amx_int8:
            return "AMX (" + ", ".join(n for n, has in (("bf16", self.amx_bf16), ("int8", self.amx_int8)) if has) + ")"
        if self.avx512_bf16:
            return "AVX512-BF16" + (" and VNNI" if self.vnni else "")
        if self.avx512:
            return "AVX-512" + (" with VNNI" if self.vnni else "") + ", no bf16 unit"
        if self.avx2:
            return "AVX2 only" + (" (with VNNI)" if self.vnni else "")
        return "no AVX2"

    @classmethod
    def from_flags(cls, flags: set[str]) -> CpuFeatures:
        """From the kernel's flag names (``/proc/cpuinfo``'s ``flags`` line)."""
        return cls(
            amx_bf16="amx_bf16" in flags, amx_int8="amx_int8" in flags, avx512_bf16="avx512_bf16" in flags,
            vnni=bool({"avx512_vnni", "avx_vnni"} & flags), avx512="avx512f" in flags, avx2="avx2" in flags,
        )


def parse_cpuinfo(text: str) -> CpuFeatures:
    """The features of the first processor listed in a ``/proc/cpuinfo`` text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return CpuFeatures.from_flags(set(value.split()))
    return CpuFeatures()


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's :class:`CpuFeatures` (read once per process)."""
    try:
        return parse_cpuinfo(CPUINFO.read_text())
    except OSError:  # not Linux: PyTorch's probe of the same instructions
        return _torch_probe()


def _torch_probe() -> CpuFeatures:
    import torch

    probe = getattr(torch._C, "_cpu", None)

    def has(name: str) -> bool:
        fn = getattr(probe, name, None)
        return bool(fn()) if fn is not None else False

    capability = torch.backends.cpu.get_cpu_capability()
    return CpuFeatures(
        amx_bf16=has("_is_amx_tile_supported"), amx_int8=has("_is_amx_tile_supported"),
        avx512_bf16=has("_is_avx512_bf16_supported"), vnni=has("_is_avx512_vnni_supported"),
        avx512=capability.startswith("AVX512"), avx2=capability in ("AVX2", "AVX512"),
    )
