"""Choosing the device a command runs on: one rule, one error, for every command."""

from __future__ import annotations

import torch

from .errors import DeviceError

DEVICE_HELP = "auto (cuda if available), cpu, cuda or cuda:N"


def resolve_device(name: str | torch.device) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` → a usable :class:`torch.device`.

    Raises :class:`~atrous.errors.DeviceError` (one line, with the fix) for a name torch does not
    know, a device type atrous does not run on, CUDA on a machine without it, or a GPU index
    beyond the machine's count.
    """
    text = str(name).strip()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError) as err:
        raise DeviceError(f"--device {text!r} is not a device; use {DEVICE_HELP}") from err
    if device.type not in ("cpu", "cuda"):
        raise DeviceError(f"--device {text!r}: atrous runs on cpu or cuda; use {DEVICE_HELP}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise DeviceError(
                f"--device {text}: CUDA is not available (torch.cuda.is_available() is False; this "
                f"PyTorch is {build}); run on a machine with an NVIDIA GPU, or use --device cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(f"--device {text}: this machine has {count} GPU(s) (cuda:0 to cuda:{count - 1})")
    return device
