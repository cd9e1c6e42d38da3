"""Declared figures of the packaged configs: what ``atrous zoo`` and ``atrous info`` print
(parameters, output stride, receptive field, GFLOPs at 512×1024) without building a network.

``figures.json`` beside this module holds

* ``models``: for each distinct ``model`` section of the packaged configs, keyed by its
  :func:`digest`, the :func:`~atrous.models.complexity.model_info` of a meta-device build at
  :data:`IMAGE_SIZE`;
* ``configs``: for each packaged config, the digest of the whole config, so that an unchanged
  packaged config is known to be valid without importing the code that validates it.

tests/test_startup.py checks every declared figure against a fresh meta-device build, and
tests/test_errors.py every packaged config against the validation; ``python
scripts/declare_figures.py`` rewrites the file after a packaged config or an architecture
changes. A model section or image size the file does not hold is measured on the meta device
(:func:`measure_info`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ..config import thaw
from .spec import ModelSpec

FIGURES_FILE = Path(__file__).with_name("figures.json")
IMAGE_SIZE = (512, 1024)  # the image size of the declared FLOPs (``atrous info``'s default)


def digest(section: Mapping[str, Any]) -> str:
    """A short SHA-256 of a config or config section (key order does not matter)."""
    text = json.dumps(thaw(section), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def declared() -> dict[str, Any]:
    """The contents of ``figures.json``."""
    return json.loads(FIGURES_FILE.read_text())


def declared_info(model: Mapping[str, Any], image_size: tuple[int, int] = IMAGE_SIZE) -> dict[str, Any] | None:
    """The declared ``model_info`` of a ``model`` section at ``image_size``, or ``None``."""
    if tuple(image_size) != IMAGE_SIZE:
        return None
    info = declared()["models"].get(digest(model))
    return dict(info) if info is not None else None


def is_packaged_config(cfg: Mapping[str, Any]) -> bool:
    """Whether ``cfg`` is a packaged config as shipped (no override changed it): such a config
    is valid (tests/test_errors.py validates each one)."""
    return digest(cfg) in declared()["configs"].values()


def measure_info(model: Mapping[str, Any] | ModelSpec, image_size: tuple[int, int] = IMAGE_SIZE) -> dict[str, Any]:
    """``model_info`` of a ``model`` section (or its spec) built on the meta device (no memory, no weights, no
    download); raises :class:`~atrous.errors.ConfigError` for a section that does not build."""
    import torch

    from .build import build_model
    from .complexity import model_info

    with torch.device("meta"):
        segmentor = build_model(model if isinstance(model, ModelSpec) else {"model": model}, pretrained_backbone=False)
    return model_info(segmentor, tuple(image_size))


def info(model: Mapping[str, Any], image_size: tuple[int, int] = IMAGE_SIZE) -> dict[str, Any]:
    """The declared ``model_info`` where there is one, else the measured one."""
    return declared_info(model, image_size) or measure_info(model, image_size)


def measure_declared() -> dict[str, Any]:
    """What ``figures.json`` should hold: every packaged config measured afresh."""
    from ..config import config_name, list_configs, load_config

    configs, models = {}, {}
    for path in list_configs():
        cfg = load_config(path)
        configs[config_name(path)] = digest(cfg)
        key = digest(cfg["model"])
        if key not in models:
            models[key] = measure_info(cfg["model"])
    return {"image_size": list(IMAGE_SIZE), "configs": configs, "models": dict(sorted(models.items()))}
