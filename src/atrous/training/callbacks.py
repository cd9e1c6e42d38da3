"""Checkpoint plumbing: atomic writes, safe loading, exact resumption."""

from __future__ import annotations

import errno
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import DiskFullError
from ..io import atomic_save
from .sampling import derive_seed

DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# What torch.save's zip writer (PytorchStreamWriter) raises when a write comes up short: the
# OS error (ENOSPC) is lost, but a short write of a local file is a full disk or quota.
TORCH_SHORT_WRITE = ("unexpected pos", "file write failed")


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` (from writing a file) means the disk or quota is full."""
    if isinstance(error, OSError):
        return error.errno in DISK_FULL_ERRNOS
    return isinstance(error, RuntimeError) and any(text in str(error) for text in TORCH_SHORT_WRITE)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints are written to a temporary file and renamed: a crash never leaves a torn
    ``last.ckpt``, and a full disk is reported as :class:`~atrous.errors.DiskFullError` (the
    temporary file is removed; the previous checkpoint stays). They are read with
    ``weights_only=True`` (no code runs on load)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        try:
            atomic_save(path, lambda buffer: torch.save(checkpoint, buffer))
        except (OSError, RuntimeError) as err:
            if not is_disk_full(err):
                raise
            reason = (str(err).splitlines() or [type(err).__name__])[0]
            last = path.parent / "last.ckpt"
            then = (f"rerun with --resume to continue from {last}" if last.is_file()
                    else "rerun (no last.ckpt was written yet: the run starts afresh, with --overwrite)")
            full = DiskFullError(
                f"the disk holding {path.parent} is full: writing checkpoint {path.name} failed ({reason}); "
                f"free some space (or set train.output_dir to another disk) and {then}"
            )
            full.errno = errno.ENOSPC
            raise full from err

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


class ClosingCheckpoints(L.Callback):
    """Every run, however short, ends with ``checkpoints/last.ckpt`` at its final step and a
    ``checkpoints/best.ckpt``.

    Lightning's checkpoint callbacks write when validation ends (or a training epoch does): a run
    stopped by ``max_steps`` inside its first epoch, one whose ``check_val_every_n_epoch`` is
    beyond its last epoch, or one with ``limit_val_batches=0`` would leave neither, or a stale
    ``last.ckpt``. At the end of training this callback writes ``last.ckpt`` when no checkpoint
    holds the final step and, when no validation has scored a checkpoint in the whole run (resumed
    attempts included: the monitoring callback's best score is restored with it), ``best.ckpt`` as
    the final weights — the rule: best = last when nothing was validated. :attr:`validated` says
    which rule holds.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.validated = False
        self._saved_at: int | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self._saved_at = trainer.global_step

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validated = any(getattr(callback, "monitor", None) is not None and callback.best_model_score is not None
                             for callback in trainer.checkpoint_callbacks)
        # Every process calls save_checkpoint (it synchronises); rank zero writes.
        if self._saved_at != trainer.global_step:
            trainer.save_checkpoint(self.dirpath / "last.ckpt")
        if not self.validated:
            trainer.save_checkpoint(self.dirpath / "best.ckpt")
