"""Check a ``fit --resume`` checkpoint before Lightning reads it.

Lightning's own loader would unpickle any file and fail deep inside with a traceback. Here the
file is read with ``weights_only=True`` (through :func:`atrous.models.checkpoint.read_checkpoint`:
a file that pickles code is refused, the code never runs) and must be a *training* checkpoint
(model, optimizer and loop state) of the model this config builds.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.checkpoint import read_checkpoint
from .train_section import TrainConfig

TRAINING_KEYS = ("state_dict", "optimizer_states", "loops", "epoch", "global_step")


def _reason(error: BaseException) -> str:
    """One line on why torch.load refused a file (its own messages run over many lines)."""
    cause = error.__cause__ or error
    if isinstance(cause, pickle.UnpicklingError):
        return "not a torch checkpoint, or it pickles objects other than tensors: refused, no code in it ran"
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0][:200]


def check_resume_checkpoint(path: str | Path, model_state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Read ``path`` safely and check it resumes a run of the model whose state dict is
    ``model_state`` (the LightningModule's: keys ``model.…``); returns the checkpoint.

    Raises:
        CheckpointError: missing, unreadable (truncated, random bytes, pickled code), not a
            training checkpoint, or saved from another model (the first differing keys or
            shapes are named).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--resume: no checkpoint at {path}")
    try:
        with warnings.catch_warnings():  # torch's notes on refused pickles: the error says it
            warnings.simplefilter("ignore")
            ckpt = read_checkpoint(path)
    except (ValueError, OSError) as err:  # read_checkpoint's ConfigError: unreadable
        raise CheckpointError(f"--resume: {path} cannot be read as a checkpoint ({_reason(err)}); "
                              "pass the run's checkpoints/last.ckpt") from err
    missing = [key for key in TRAINING_KEYS if key not in ckpt]
    state = ckpt.get("state_dict")
    if missing or not isinstance(state, Mapping):
        raise CheckpointError(
            f"--resume: {path} is not an atrous training checkpoint (no {', '.join(missing) or 'state_dict'}); "
            "to start a new run from its weights, set train.init_checkpoint instead"
        )
    expected = {key: tuple(value.shape) for key, value in model_state.items()}
    stored = {key: tuple(value.shape) for key, value in state.items() if isinstance(value, torch.Tensor)}
    if stored != expected:
        absent = sorted(set(expected) - set(stored))[:3]
        extra = sorted(set(stored) - set(expected))[:3]
        shapes = sorted(k for k in set(stored) & set(expected) if stored[k] != expected[k])[:3]
        details = "; ".join(
            part for part in (
                f"missing {absent}" if absent else "",
                f"unexpected {extra}" if extra else "",
                ", ".join(f"{k} {stored[k]} vs {expected[k]}" for k in shapes),
            ) if part
        )
        raise CheckpointError(
            f"--resume: {path} was saved from a different model than this config builds ({details}); "
            "pass the config the run was trained with"
        )
    return ckpt


RESUMED_SETTINGS = ("optimizer", "lr_schedule", "lr_multipliers")  # what the optimizer and scheduler state holds


def check_resumed_settings(ckpt: Mapping[str, Any], now: TrainConfig, path: str | Path) -> None:
    """Refuse to resume with other optimizer settings than the run was trained with.

    Lightning restores the optimizer's and the scheduler's state from the checkpoint, learning
    rates included, so a changed ``train.optimizer.lr`` would silently keep the old value while
    the new checkpoints stored the new config. The run's settings are those its checkpoint
    stores (``hyper_parameters.config.train``); a checkpoint without a stored config is not checked.

    Raises:
        CheckpointError: naming each changed setting with both values.
    """
    stored = ((ckpt.get("hyper_parameters") or {}).get("config") or {})
    if not isinstance(stored, Mapping) or not isinstance(stored.get("train", {}), Mapping):
        return
    before = TrainConfig.from_mapping(stored.get("train"))  # the stored mapping, parsed on load
    changed = []
    for name in RESUMED_SETTINGS:
        old, new = getattr(before, name), getattr(now, name)
        if old == new:
            continue
        keys = sorted(set(old) | set(new), key=str)
        diffs = [f"train.{name}.{k} {_shown(old, k)} -> {_shown(new, k)}" for k in keys if old.get(k) != new.get(k)]
        changed.extend(diffs or [f"train.{name}"])
    if changed:
        raise CheckpointError(
            f"--resume: the run in {path} was trained with other optimizer settings ({'; '.join(changed)}); "
            "its optimizer state would keep the old ones. Resume with the run's settings, or start a new run "
            f"from its weights with train.init_checkpoint={path}"
        )


def _shown(section: Mapping[str, Any], key: str) -> str:
    return repr(section[key]) if key in section else "(not set)"
