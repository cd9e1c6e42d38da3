"""Training-curve figure from a run's CSV log (``<run>/csv/metrics.csv``)."""

from __future__ import annotations

import csv
from pathlib import Path

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


def plot_training_curves(log: Path, output: Path, title: str = "Training") -> Path:
    """Loss per step (left) and train/val mIoU per epoch (right), written atomically as PNG."""
    rows = read_log(log)
    fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(11, 4))
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
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(output, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return output
