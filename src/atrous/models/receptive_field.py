"""Theoretical receptive fields of atrous layers (report §4.1, DenseASPP §3.3).

For an atrous layer with kernel ``K`` and rate ``d`` the report gives ``R = (d−1)(K−1) + K``;
stacking layers adds their fields minus one (``K = K1 + K2 − 1``). With strides in the stack,
each layer's growth is multiplied by the product of the strides before it (the "jump"), which
reduces to the report's formula when every stride is 1. DenseASPP(3, 6, 12, 18, 24) has
``R_max = 7 + 13 + 25 + 37 + 49 − 4 = 127`` feature-map pixels.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ConvSpec:
    """One convolution on a path through a head: kernel size, atrous rate and stride."""

    kernel: int
    dilation: int = 1
    stride: int = 1


def layer_receptive_field(kernel: int, dilation: int = 1) -> int:
    """Report eq.: ``R = (d − 1)(K − 1) + K`` (the span of a dilated kernel)."""
    return (dilation - 1) * (kernel - 1) + kernel


def stacked_receptive_field(path: Iterable[ConvSpec]) -> int:
    """Receptive field, in input pixels of the path, of a stack of convolutions.

    >>> stacked_receptive_field([ConvSpec(3, d) for d in (3, 6, 12, 18, 24)])
    127
    """
    field, jump = 1, 1
    for spec in path:
        field += (layer_receptive_field(spec.kernel, spec.dilation) - 1) * jump
        jump *= spec.stride
    return field
