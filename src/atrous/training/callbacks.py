"""Checkpoint plumbing: atomic writes, safe loading, exact resumption."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..io import atomic_write
from .sampling import derive_seed


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a crash never leaves a torn
    ``last.ckpt``. They are read with ``weights_only=True`` (no code runs on load)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))

    def load_checkpoint(self, path: str | Path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return torch.load(path, map_location=map_location or "cpu", weights_only=True)


class StepSeedCallback(L.Callback):
    """Reseeds torch, NumPy and Python before every training step from ``(seed, step, rank)``,
    so the model's own randomness (dropout, stochastic depth) does not depend on history: a
    resumed run draws the same masks as an uninterrupted one (see :mod:`.sampling`)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        step_seed = derive_seed(self.seed, trainer.global_step, batch_idx, trainer.global_rank)
        random.seed(step_seed)
        np.random.seed(step_seed)
        torch.manual_seed(step_seed)
