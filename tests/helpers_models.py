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


def measured_receptive_field(head: nn.Module, in_channels: int, bound: int) -> int:
    """The head's receptive field in input (feature-map) pixels, measured rather than derived
    from its ``conv_path()``: the span of rows of a ``(1, in_channels, L, 1)`` float64 input
    whose gradient reaches the centre output row, ``L = 2·bound + 65``.

    Every conv weight is set to ``1 / fan_in`` (biases 0), BatchNorm to the identity, and the
    image-pooling branches to zero, so that every activation is positive: no ReLU blocks a path
    and no sum cancels, and the gradient's support is exactly the set of pixels some path of
    convolutions reaches (a dilated kernel leaves gaps inside it; the field is the span). A
    support that touches either end of the input means the field exceeds ``bound``: an error.
    """
    from atrous.models.heads.aspp import ASPPPooling

    head = head.double().eval()
    with torch.no_grad():
        for module in head.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.BatchNorm2d):
                module.reset_parameters()
                module.reset_running_stats()
        for module in head.modules():
            if isinstance(module, ASPPPooling):  # global: its gradient covers every pixel
                for parameter in module.parameters():
                    parameter.zero_()
    length = 2 * bound + 65
    x = torch.ones(1, in_channels, length, 1, dtype=torch.float64, requires_grad=True)
    out = head(x)
    out[0, :, out.shape[2] // 2, 0].sum().backward()
    rows = (x.grad[0, :, :, 0].abs().sum(0) != 0).nonzero().flatten()
    first, last = int(rows.min()), int(rows.max())
    assert 0 < first and last < length - 1, f"the field reaches the input's ends: larger than {bound}"
    return last - first + 1


def small_model_cfg(**changes: object) -> dict:
    """A ResNet-18 + FCN model section, with top-level model keys replaced by ``changes``."""
    cfg = {
        "num_classes": 3,
        "backbone": {"name": "resnet18", "output_stride": 8, "pretrained": False},
        "head": {"name": "fcn"},
    }
    cfg.update(changes)
    return cfg
