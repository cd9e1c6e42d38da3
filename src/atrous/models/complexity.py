"""Model size and cost: parameter counts, output stride, receptive field and FLOPs.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device copy of
the model (no memory, no compute), so even 1024×2048 inputs cost nothing. One multiply-add is
two FLOPs; ``gmacs`` is half of ``gflops``.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .segmentor import Segmentor


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(total, trainable) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def count_flops(model: nn.Module, image_size: tuple[int, int], batch: int = 1) -> int:
    """FLOPs of one inference forward pass on ``(batch, 3, H, W)`` (eval mode, meta device)."""
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.zeros(batch, getattr(model, "in_channels", 3), *image_size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        meta(x)
    return int(counter.get_total_flops())


def model_info(model: Segmentor, image_size: tuple[int, int] = (512, 1024)) -> dict[str, Any]:
    """The numbers ``atrous info`` reports (JSON keys as documented in docs/configs.md)."""
    total, trainable = count_parameters(model)
    flops = count_flops(model, image_size)
    return {
        "params_total": total,
        "params_trainable": trainable,
        "output_stride": model.output_stride,
        "receptive_field": model.head_receptive_field,
        "global_context": bool(model.head.global_context),
        "image_size": list(image_size),
        "gflops": round(flops / 1e9, 3),
        "gmacs": round(flops / 2e9, 3),
    }
