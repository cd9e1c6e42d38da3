"""Training-curve figure from a run's CSV log (``<run>/csv/metrics.csv``)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..io import atomic_write  # noqa: E402


def read_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _series(rows: list[dict[str, str]], key: str, x: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for row in rows:
        if row.get(key) not in (None, "") and row.get(x) not in (None, ""):
            xs.append(float(row[x]))
            ys.append(float(row[key]))
    return xs, ys


def training_series(log: Path) -> dict[str, Any]:
    """The numbers behind the curves: ``train_loss`` (step, value), ``val_loss``, ``train_mIoU``
    and ``val_mIoU`` (epoch counted from 1, value) and ``val_iou`` (class → per-epoch values)."""
    rows = read_log(log)

    def pairs(key: str, x: str, shift: int = 0) -> list[list[float]]:
        xs, ys = _series(rows, key, x)
        return [[x_ + shift, y] for x_, y in zip(xs, ys, strict=True)]

    classes = [k.removeprefix("val/IoU/") for k in (rows[0] if rows else {}) if k.startswith("val/IoU/")]
    return {
        "train_loss": pairs("train/loss_step", "step"),
        "val_loss": pairs("val/loss", "step"),
        "train_mIoU": pairs("train/mIoU", "epoch", 1),
        "val_mIoU": pairs("val/mIoU", "epoch", 1),
        "val_iou": {c: pairs(f"val/IoU/{c}", "epoch", 1) for c in classes},
    }


def plot_training_curves(
    log: Path, output: Path, title: str = "Training", *, class_names: Sequence[str] = (), palette: Any = None
) -> Path:
    """Loss per step (left) and train/val mIoU per epoch (right), written atomically as PNG.

    With ``class_names`` (train-id order) and their ``palette`` ``(K, 3)`` uint8, a third panel
    shows the validation IoU of every logged class per epoch in the class colours."""
    rows = read_log(log)
    per_class = bool(class_names) and palette is not None
    fig, axes = plt.subplots(1, 3 if per_class else 2, figsize=(16.5 if per_class else 11, 4))
    ax_loss, ax_miou = axes[0], axes[1]
    steps, loss = _series(rows, "train/loss_step", "step")
    ax_loss.plot(steps, loss, lw=0.8, alpha=0.6, label="train loss (step)")
    val_steps, val_loss = _series(rows, "val/loss", "step")
    if val_loss:
        ax_loss.plot(val_steps, val_loss, "o-", label="val loss (epoch)")
    ax_loss.set(xlabel="iteration", ylabel="cross-entropy", title="Loss")
    ax_loss.legend()
    for key, label in (("train/mIoU", "train"), ("val/mIoU", "val")):
        epochs, miou = _series(rows, key, "epoch")
        if miou:
            ax_miou.plot([e + 1 for e in epochs], [100 * m for m in miou], "o-", label=f"{label} mIoU")
    ax_miou.set(xlabel="epoch", ylabel="mIoU (%)", title="Mean IoU")
    ax_miou.legend()
    ax_miou.grid(alpha=0.3)
    if per_class:
        ax = axes[2]
        for c, name in enumerate(class_names):
            epochs, iou = _series(rows, f"val/IoU/{name}", "epoch")
            if iou:
                ax.plot([e + 1 for e in epochs], [100 * v for v in iou], "o-", ms=3, color=palette[c] / 255.0,
                        mec="0.3", label=name)
        ax.set(xlabel="epoch", ylabel="IoU (%)", title="Validation IoU per class", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(output, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return output
