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


# Identity tests (dilated = strided, folded = unfolded, converted = reference, …) run in float64:
# there rounding (eps 2.2e-16) grows with depth and summation length to at most ~1e-13 of an
# output's scale whichever SIMD kernels a CPU picks, while a wrong stride, padding, dilation, key
# or BatchNorm changes outputs by ~1e-2 of it or more; 1e-10 sits between with margins of 1000x.
IDENTITY_RTOL = 1e-10


def assert_identical(actual: torch.Tensor, expected: torch.Tensor, rtol: float = IDENTITY_RTOL) -> None:
    """``actual`` equals ``expected`` up to float64 rounding: both are float64 and
    ``|actual − expected| ≤ rtol · (|expected| + max |expected|)`` elementwise (the second term
    covers elements near zero, whose rounding error follows the tensor's scale, not their own)."""
    assert actual.dtype == expected.dtype == torch.float64, "identity tests compute in float64"
    scale = float(expected.abs().max())
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=rtol * scale)
