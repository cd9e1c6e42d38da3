"""Keyword builders for smp and torchvision users: the same :class:`Segmentor` as a config.

>>> cfg = model_config("deeplabv3plus", encoder="resnet18", num_classes=5, output_stride=16)
>>> cfg["model"]["head"]["context"]["atrous_rates"]
[6, 12, 18]

:func:`create_model` builds ``model_config(...)`` with :func:`~atrous.models.build.build_model`
and keeps it as ``model.config``; :func:`save_config` writes it as YAML, which ``atrous fit
--config`` (after adding ``data`` and ``train`` sections) and :func:`build_model` read back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..io import atomic_write
from .backbones import BACKBONES, TIMM_PREFIX
from .backbones.timm_families import VERIFIED
from .build import build_model
from .segmentor import Segmentor


def _aspp_rates(output_stride: int) -> list[int]:
    """DeepLabv3 §3.3: (6, 12, 18) at output stride 16, doubled at 8, halved at 32."""
    return [r * 16 // output_stride for r in (6, 12, 18)] if output_stride <= 16 else [3, 6, 9]


# model name → the head config at an output stride (one record per architecture)
MODELS: dict[str, Callable[[int], dict[str, Any]]] = {
    "deeplabv3": lambda os_: {"name": "aspp", "atrous_rates": _aspp_rates(os_)},
    "deeplabv3plus": lambda os_: {"name": "deeplabv3plus", "context": {"name": "aspp", "atrous_rates": _aspp_rates(os_)}},
    "denseaspp": lambda os_: {"name": "denseaspp"},
    "denseaspp_plus": lambda os_: {"name": "deeplabv3plus", "context": {"name": "denseaspp"}},
    "fcn": lambda os_: {"name": "fcn"},
}


def list_models() -> list[str]:
    """The architectures :func:`create_model` builds."""
    return sorted(MODELS)


def list_encoders(*, dilatable: bool = False) -> list[str]:
    """Encoder names: atrous' torchvision backbones, then ``timm/<model>``.

    ``dilatable=True``: only those proven at output stride 8 and 16 (atrous' own, and the
    timm models of the verified family table, docs/encoders.md); otherwise every timm model
    (when timm is installed; each is checked when built at output stride 8 or 16).
    """
    own = sorted(BACKBONES)
    if dilatable:
        proven = {m for (m, os_) in VERIFIED if (m, 8) in VERIFIED and (m, 16) in VERIFIED}
        return own + [TIMM_PREFIX + m for m in sorted(proven)]
    try:
        import timm
    except ImportError:
        return own
    return own + [TIMM_PREFIX + m for m in timm.list_models()]


def model_config(
    model: str,
    *,
    encoder: str = "resnet50",
    num_classes: int,
    output_stride: int = 16,
    in_channels: int = 3,
    pretrained: bool | str = False,
    **head_options: Any,
) -> dict[str, Any]:
    """The config (``{"model": {...}}``) of a keyword model; ``head_options`` override the
    head's keys (``atrous_rates=[...]``, ``channels=...``). ``pretrained`` is the encoder's
    ImageNet weights (the backbone's ``pretrained`` key), not published segmentation weights
    (:func:`atrous.load_pretrained`)."""
    if model not in MODELS:
        raise ConfigError(f"unknown model {model!r}; choose from {list_models()}")
    backbone: dict[str, Any] = {"name": encoder, "output_stride": output_stride, "pretrained": pretrained}
    model_cfg: dict[str, Any] = {"num_classes": num_classes}
    if in_channels != 3:
        model_cfg["in_channels"] = in_channels  # every encoder family: the first convolution adapted
    return {"model": {**model_cfg, "backbone": backbone, "head": {**MODELS[model](output_stride), **head_options}}}


def create_model(model: str, **options: Any) -> Segmentor:
    """``create_model("deeplabv3plus", encoder="timm/convnext_tiny", num_classes=5,
    output_stride=16)`` → a :class:`Segmentor`, its config in ``.config`` (see :func:`model_config`)."""
    cfg = model_config(model, **options)
    segmentor = build_model(cfg)
    segmentor.config = cfg
    return segmentor


def save_config(config: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a config as YAML (atomically); returns the path."""
    text = yaml.safe_dump(config, sort_keys=False)
    return atomic_write(path, lambda tmp: tmp.write_text(text))
