"""Load atrous checkpoints without Lightning (prediction, export and analysis use this).

A checkpoint written by ``atrous fit`` holds the model weights under ``state_dict`` (keys
``model.…``) and the experiment config and class names under ``hyper_parameters``. Files are
read with ``weights_only=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from .build import build_model
from .segmentor import Segmentor


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"{path}: cannot be read as a checkpoint ({err})") from err
    if not isinstance(ckpt, Mapping):
        raise ConfigError(f"{path}: not an atrous checkpoint")
    return dict(ckpt)


def model_state(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The Segmentor's state dict inside a Lightning checkpoint (or a bare state dict)."""
    state = ckpt.get("state_dict", ckpt)
    inner = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return inner or dict(state)


def load_state(model: Segmentor, ckpt: Mapping[str, Any], source: str | Path) -> None:
    try:
        model.load_state_dict(model_state(ckpt))
    except RuntimeError as err:
        summary = " ".join(str(err).splitlines()[:4])
        raise ConfigError(
            f"{source} was saved from a different model than this config builds ({summary}). "
            "Pass the config the checkpoint was trained with."
        ) from err


def load_segmentor(path: str | Path, config: Mapping[str, Any] | None = None) -> tuple[Segmentor, dict[str, Any]]:
    """Model (eval mode) and experiment config from a checkpoint; ``config`` overrides the
    stored one (e.g. to change the output stride at inference)."""
    ckpt = read_checkpoint(path)
    hparams = ckpt.get("hyper_parameters") or {}
    cfg = dict(config) if config is not None else dict(hparams.get("config") or {})
    if "model" not in cfg:
        raise ConfigError(f"{path} stores no config; pass --config")
    model = build_model(cfg)
    load_state(model, ckpt, path)
    cfg.setdefault("class_names", hparams.get("class_names"))
    return model.eval(), cfg
