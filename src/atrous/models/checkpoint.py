"""Load atrous checkpoints without Lightning: the one loader every command goes through.

A checkpoint written by ``atrous fit`` (or ``atrous convert``) holds the model weights under
``state_dict`` (keys ``model.…``) and the experiment config, class names and ignore index under
``hyper_parameters``. Files are read with ``weights_only=True``: a file that pickles code is
refused, never run. Weights that are not finite (NaN or infinity, e.g. of a run that diverged)
are refused on load, naming the tensor: such a model predicts one class everywhere.

Loading a checkpoint never fetches weights it is about to overwrite: the model is built with
``pretrained_backbone=False`` whatever the stored config says (a run trained from ImageNet
weights stores ``pretrained: true``), as torchvision's builders drop ``weights_backbone`` when
``weights`` are given. Predict, validate, test, export, benchmark, analyze and resume all load
through :func:`load_segmentor` or :func:`checkpoint_config` here; ``atrous convert`` writes its
checkpoints with :func:`write_checkpoint`, in the layout ``atrous fit`` writes. A stored config of
an earlier version is migrated on load (:mod:`atrous.models.config_migrations`); the file is
never rewritten.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import apply_overrides, load_config
from ..data.label_space import config_classes
from ..errors import CheckpointError
from ..io import atomic_save
from .build import build_model
from .config_migrations import migrate_config
from .segmentor import Segmentor

ConfigSource = str | os.PathLike | Mapping[str, Any] | None


def checkpoint_load_reason(err: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in a few words: its own message
    advises loading untrusted files with ``weights_only=False``, which atrous never does."""
    text = str(err)
    if "Weights only load failed" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else ""
        detail = " ".join(detail.split("Check the documentation", 1)[0].split()).rstrip(".")
        return ("not a file torch.save wrote, or one holding objects other than tensors and plain values, "
                f"which are never unpickled{f': {detail}' if detail else ''}; pass a .ckpt written by atrous fit or convert")
    return text


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint file as a mapping (``weights_only``); a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or pickled code (refused, never run)
        raise CheckpointError(f"{path}: cannot be read as a checkpoint ({checkpoint_load_reason(err)})") from err
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{path}: not an atrous checkpoint")
    state = ckpt.get("state_dict", ckpt)
    if isinstance(state, Mapping):
        check_finite(state, path)
    return dict(ckpt)


def check_finite(state: Mapping[str, Any], source: str | os.PathLike) -> None:
    """Refuse a state dict with a floating-point tensor holding NaN or infinity, naming it."""
    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{source}: the weights are not finite: {name} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()} (a run that diverged?); use an earlier checkpoint"
            )


def checkpoint_config(
    ckpt: Mapping[str, Any], source: str | os.PathLike, config: ConfigSource = None, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """The experiment config to use with a checkpoint: ``config`` (a path, a packaged name or a
    mapping) if given, else the one the checkpoint stores (in the current format:
    :func:`~atrous.models.config_migrations.migrate_config` migrates a config of an earlier
    version, or says why it cannot), with ``overrides`` applied; the checkpoint's class names
    under ``class_names`` unless the config has its own."""
    hparams = ckpt.get("hyper_parameters") or {}
    if config is None:
        stored = hparams.get("config")
        if not stored:
            raise CheckpointError(f"{source} stores no config; pass --config")
        cfg = apply_overrides(migrate_config(stored, source), overrides)
    elif isinstance(config, Mapping):
        cfg = apply_overrides(config, overrides)
    else:
        cfg = load_config(config, overrides)
    if "model" not in cfg:
        raise CheckpointError(f"{source}: its config has no 'model' section; pass --config")
    cfg.setdefault("class_names", hparams.get("class_names"))
    return cfg


def model_state(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The Segmentor's state dict inside a Lightning checkpoint (or a bare state dict)."""
    state = ckpt.get("state_dict", ckpt)
    inner = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return inner or dict(state)


def load_state(model: Segmentor, ckpt: Mapping[str, Any], source: str | os.PathLike) -> None:
    """Load a checkpoint's weights into ``model``, with a clear error if another model saved it."""
    try:
        model.load_state_dict(model_state(ckpt))
    except RuntimeError as err:
        summary = " ".join(str(err).splitlines()[:4])
        raise CheckpointError(
            f"{source} was saved from a different model than this config builds ({summary}). "
            "Pass the config the checkpoint was trained with."
        ) from err


def load_segmentor(
    path: str | os.PathLike, config: ConfigSource = None, overrides: Sequence[str] = ()
) -> tuple[Segmentor, dict[str, Any]]:
    """Model (eval mode, on the CPU) and experiment config of a checkpoint.

    ``config`` replaces the stored config and ``overrides`` change it (e.g.
    ``model.backbone.output_stride=8`` to evaluate at another output stride). The file is read
    once; no pretrained weights are fetched (see the module docstring).
    """
    ckpt = read_checkpoint(path)
    cfg = checkpoint_config(ckpt, path, config, overrides)
    model = build_model(cfg, pretrained_backbone=False)
    load_state(model, ckpt, path)
    return model.eval(), cfg


def label_space(config: Mapping[str, Any], num_classes: int) -> tuple[list[str] | None, int]:
    """Class names and ignore index of the config's dataset, as ``atrous fit`` stores them
    (``None`` names when the config does not tell them, or they do not fit ``num_classes``;
    ignore index 255 then)."""
    info = config_classes(config)
    if info is None:
        return None, 255
    names = list(info.names) if len(info.names) == num_classes else None
    return names, info.ignore_index


def write_checkpoint(
    output: str | os.PathLike, model: Segmentor, config: Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    keep_replaced: bool = False,
) -> Path:
    """Write ``model`` with its experiment ``config`` as an atrous checkpoint, atomically, in the
    layout ``atrous fit`` writes: ``state_dict`` (keys ``model.…``) and ``hyper_parameters``
    (``config``, ``class_names``, ``ignore_index`` of :func:`label_space`), plus ``extra``
    entries (e.g. ``converted_from``). Returns the path written; ``overwrite`` and
    ``keep_replaced`` as in :func:`atrous.io.atomic_write`."""
    class_names, ignore_index = label_space(config, model.num_classes)
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"config": config, "class_names": class_names, "ignore_index": ignore_index},
        **(extra or {}),
    }
    return atomic_save(output, lambda buffer: torch.save(checkpoint, buffer), overwrite=overwrite,
                       keep_replaced=keep_replaced)
