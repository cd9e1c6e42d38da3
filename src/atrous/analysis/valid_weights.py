"""Valid weights of a 3×3 atrous filter on a finite feature map (DeepLabv3 §3.3, Fig. 4).

A 3×3 filter with rate ``r`` and zero padding ``r`` (same-size output) reads, at output
position ``(i, j)``, the rows ``i − r, i, i + r`` and the columns ``j − r, j, j + r``. A tap is
*valid* when it falls inside the ``H × W`` map rather than on padded zeros. Rows and columns are
independent, so the number of valid taps is ``rows(i) · cols(j)`` with ``rows, cols ∈ {1, 2, 3}``
(1, 2, 3, 4, 6 or 9 valid weights). DeepLabv3 Fig. 4 plots, for a 65×65 map, the fraction of
positions with 9 valid weights (all of them), 4 (a corner of the filter hangs over two edges)
and 1 (only the centre: the filter has degenerated to 1×1) as the rate grows.

In one dimension of length ``n``: ``max(0, n − 2r)`` positions see both neighbours,
``min(n, max(0, 2r − n))`` see neither, and the rest see exactly one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .common import plt, save_figure

VALID_COUNTS = (1, 2, 3, 4, 6, 9)
PAPER_COUNTS = (1, 4, 9)  # the three curves of DeepLabv3 Fig. 4


def valid_taps_1d(length: int, rate: int) -> np.ndarray:
    """How many of the three taps ``(−r, 0, +r)`` fall inside a line of ``length``: counts of
    positions with ``(1, 2, 3)`` valid taps, shape ``(3,)``, summing to ``length``."""
    if length < 1 or rate < 1:
        raise InputError(f"length and rate must be positive, got {length} and {rate}")
    both = max(0, length - 2 * rate)
    neither = min(length, max(0, 2 * rate - length))
    return np.array([neither, length - both - neither, both], dtype=np.int64)


def valid_weight_counts(size: int | tuple[int, int], rate: int) -> dict[int, int]:
    """Number of output positions of an ``H × W`` map (``size``: N for N×N) at which exactly
    ``v`` taps of a 3×3 filter with atrous ``rate`` are valid, for ``v`` in 1, 2, 3, 4, 6, 9.

    >>> valid_weight_counts(65, 1)[9], valid_weight_counts(65, 65)[1]
    (3969, 4225)
    """
    height, width = (size, size) if isinstance(size, int) else size
    rows, cols = valid_taps_1d(height, rate), valid_taps_1d(width, rate)
    counts = dict.fromkeys(VALID_COUNTS, 0)
    for a in range(3):
        for b in range(3):
            counts[(a + 1) * (b + 1)] += int(rows[a] * cols[b])
    return counts


def valid_weight_curves(size: int | tuple[int, int] = 65, rates: Sequence[int] | None = None) -> dict[str, Any]:
    """Normalised counts (fraction of the ``H·W`` positions) of every valid-weight count per rate.

    Returns ``{"size": [H, W], "rates": [...], "fractions": {v: [fraction per rate]}}``;
    ``rates`` defaults to ``1 … max(H, W)`` (DeepLabv3 Fig. 4: 65×65, rates up to 65).
    """
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if min(height, width) < 1:
        raise InputError(f"feature map size must be positive, got {height}×{width}")
    rates = list(range(1, max(height, width) + 1)) if rates is None else [int(r) for r in rates]
    fractions: dict[int, list[float]] = {v: [] for v in VALID_COUNTS}
    for rate in rates:
        counts = valid_weight_counts((height, width), rate)
        for v in VALID_COUNTS:
            fractions[v].append(counts[v] / (height * width))
    return {"size": [height, width], "rates": rates, "fractions": fractions}


def plot_valid_weights(panels: Sequence[dict[str, Any]], output: Path, title: str = "") -> Path:
    """DeepLabv3 Fig. 4, one panel per entry of ``panels`` (:func:`valid_weight_curves` results,
    optionally with ``marked_rates``, e.g. a head's rates drawn as vertical lines, and a
    ``title``): the fractions of positions with 1, 4 and 9 valid weights against the rate
    (2, 3 or 6 valid weights summed, dotted)."""
    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels) + 1.8, 4.4), squeeze=False)
    for ax, curves in zip(axes[0], panels, strict=True):
        height, width = curves["size"]
        fractions = curves["fractions"]
        for v, colour in ((9, "tab:green"), (4, "tab:orange"), (1, "tab:blue")):
            ax.plot(curves["rates"], fractions[v], color=colour, lw=2, label=f"{v} valid weight{'s' if v > 1 else ''}")
        others = np.sum([fractions[v] for v in VALID_COUNTS if v not in PAPER_COUNTS], axis=0)
        ax.plot(curves["rates"], others, ":", color="0.5", lw=1.2, label="2, 3 or 6 valid weights")
        for i, rate in enumerate(curves.get("marked_rates", ())):
            ax.axvline(rate, color="0.35", lw=0.8, ls="--", label="model's rates" if i == 0 else None)
            ax.text(rate, 1.02, str(rate), ha="center", va="bottom", fontsize=8, color="0.3")
        ax.set(xlabel="atrous rate", ylabel="normalised count (fraction of positions)", ylim=(0, 1.08),
               xlim=(0, max(curves["rates"]) + 1))
        ax.set_title(curves.get("title") or f"3×3 filter on a {height}×{width} feature map", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or "Valid weights of a 3×3 atrous filter as the rate grows (DeepLabv3 Fig. 4)")
    fig.tight_layout()
    return save_figure(fig, output)
