"""Learning-rate schedules, stepped every iteration."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def poly_factor(step: int, max_steps: int, power: float = 0.9) -> float:
    """DeepLabv3 §4.1 "poly": the initial rate times ``(1 − iter/max_iter)^power``."""
    return max(0.0, 1.0 - step / max(1, max_steps)) ** power


def build_scheduler(optimizer: Optimizer, name: str, max_steps: int, *, power: float = 0.9, warmup_steps: int = 0) -> LambdaLR:
    """``poly``, ``cosine`` or ``constant``, with optional linear warm-up; one step per iteration."""

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        if name == "poly":
            return warm * poly_factor(step, max_steps, power)
        if name == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max(1, max_steps)))
        return warm

    if name not in ("poly", "cosine", "constant"):
        raise ValueError(f"unknown lr schedule {name!r}; choose poly, cosine or constant")
    return LambdaLR(optimizer, factor)
