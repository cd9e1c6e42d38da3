"""Class pixel histograms of a dataset's splits (``atrous check-data --output DIR``).

``class_pixels.json``: per split, the pixels, share of labelled pixels and number of images of
each class, the ignored pixels and the classes with no pixel. ``class_pixels.png``: one bar chart
per split — each class's share of the labelled pixels on a log axis (rare classes stay visible),
bars in the class colours, classes absent from the split marked in red.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..io import atomic_write, json_text
from .base import ClassInfo
from .check import ClassPixels

JSON_NAME = "class_pixels.json"
CHART_NAME = "class_pixels.png"


def write_class_pixels(folder: Path, counts: Mapping[str, ClassPixels], classes: ClassInfo) -> tuple[Path, Path]:
    """Write :data:`JSON_NAME` and :data:`CHART_NAME` into ``folder`` (atomically); returns both paths."""
    report = {"classes": list(classes.names), "ignore_index": classes.ignore_index,
              "splits": {split: c.to_dict() for split, c in counts.items()}}
    json_path = atomic_write(folder / JSON_NAME, lambda tmp: tmp.write_text(json_text(report)))
    return json_path, _chart(folder / CHART_NAME, counts, classes)


def _chart(path: Path, counts: Mapping[str, ClassPixels], classes: ClassInfo) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = classes.num_classes
    fig, axes = plt.subplots(len(counts), 1, figsize=(max(6.0, 0.45 * k + 2), 2.6 * len(counts)), squeeze=False)
    colors = classes.palette.astype(float) / 255
    for ax, (split, c) in zip(axes[:, 0], counts.items(), strict=True):
        labelled = max(int(c.pixels.sum()), 1)
        share = 100.0 * c.pixels / labelled
        floor = 1e-3  # % — where an absent class's (empty) bar would start on the log axis
        ax.bar(np.arange(k), np.where(share > 0, share, np.nan), color=colors, edgecolor="black", linewidth=0.5)
        for i in np.flatnonzero(c.pixels == 0):
            ax.text(i, floor * 2, "absent", color="red", rotation=90, ha="center", va="bottom", fontsize=8)
        ax.set_yscale("log")
        ax.set_ylim(floor, 100)
        ax.set_xlim(-0.7, k - 0.3)
        ax.set_ylabel("% of labelled pixels")
        ignored = c.ignored / max(c.ignored + labelled, 1)
        ax.set_title(f"data.{split}: {c.items} images, {ignored:.1%} of pixels ignored", fontsize=10)
        ax.set_xticks(np.arange(k), classes.names, rotation=45 if k > 6 else 0, ha="right" if k > 6 else "center")
        ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
    return path
