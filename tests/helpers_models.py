"""Model helpers shared by the tests (export, BN folding, benchmarks, conversion, analysis)."""

from __future__ import annotations

import torch
from torch import nn


def randomized_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with non-trivial BatchNorm statistics and affine parameters, so
    that exporting, folding or renaming them wrongly changes the outputs."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            c = module.num_features
            module.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
            module.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
            with torch.no_grad():
                module.weight.copy_(torch.rand(c, generator=g) + 0.5)
                module.bias.copy_(torch.randn(c, generator=g) * 0.2)
    return model.eval()
