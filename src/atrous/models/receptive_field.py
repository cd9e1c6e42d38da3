"""Theoretical receptive fields of atrous layers (report §4.1, DenseASPP §3.3).

For an atrous layer with kernel ``K`` and rate ``d`` the report gives ``R = (d−1)(K−1) + K``;
stacking layers adds their fields minus one (``K = K1 + K2 − 1``). With strides in the stack,
each layer's growth is multiplied by the product of the strides before it (the "jump"), which
reduces to the report's formula when every stride is 1. DenseASPP(3, 6, 12, 18, 24) has
``R_max = 7 + 13 + 25 + 37 + 49 − 4 = 127`` feature-map pixels.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations


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


@dataclass(frozen=True)
class PathFields:
    """The scales a head samples (seed §4.1), in feature-map pixels: what
    :meth:`atrous.models.heads.Head.path_fields` tells the receptive-field analysis.

    ``fields``: receptive field → number of the head's paths with that field; ``parallel``: the
    fields of its layers side by side, as parallel branches (ASPP-style) would sample them;
    ``dense``: the paths combine layers (DenseASPP's dense connections), so ``fields``
    outnumber ``parallel`` — the receptive-field figure sets the two side by side.
    """

    fields: dict[int, int]
    parallel: tuple[int, ...]
    dense: bool = False


def chain_fields(path: Sequence[ConvSpec]) -> PathFields:
    """A chain of convolutions: the field after each one once (1: no convolution), and each
    convolution's own field side by side.

    >>> chain_fields([ConvSpec(3, 2), ConvSpec(3, 4)])
    PathFields(fields={5: 1, 13: 1}, parallel=(5, 9), dense=False)
    """
    stacked = {stacked_receptive_field(path[: i + 1]) for i in range(len(path))}
    parallel = {layer_receptive_field(spec.kernel, spec.dilation) for spec in path}
    return PathFields(dict.fromkeys(sorted(stacked or {1}), 1), tuple(sorted(parallel or {1})))


def dense_path_fields(rates: Sequence[int], kernel: int = 3) -> dict[int, int]:
    """Receptive field → number of paths with that field, over all ``2^L − 1`` paths through a
    DenseASPP head with ``rates`` (each non-empty subset of layers is a path, thanks to the
    dense connections).

    >>> dense_path_fields((3, 6))
    {7: 1, 13: 1, 19: 1}
    """
    fields: dict[int, int] = {}
    for n in range(1, len(rates) + 1):
        for subset in combinations(rates, n):
            rf = stacked_receptive_field(ConvSpec(kernel, r) for r in subset)
            fields[rf] = fields.get(rf, 0) + 1
    return dict(sorted(fields.items()))
