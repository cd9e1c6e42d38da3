"""Optimizers and learning-rate schedules from the ``train`` section, stepped every iteration.

``train.optimizer``: ``{name: adam | adamw | sgd, lr: …, <keyword arguments of the torch
optimizer>}``; ``train.lr_schedule``: ``{name: poly | cosine | constant, power: 0.9,
warmup_steps: 0}``. :func:`check_optimizer` and :func:`check_lr_schedule` validate both
sections against what :func:`build_optimizer` and :func:`build_scheduler` accept, so a wrong
value is reported when the config is loaded, not when training starts.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..config import ConfigError, check_keys, check_mapping, check_value, did_you_mean

OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("poly", "cosine", "constant")
_NON_NEGATIVE = ("weight_decay", "momentum", "dampening", "eps")


def poly_factor(step: int, max_steps: int, power: float = 0.9) -> float:
    """DeepLabv3 §4.1 "poly": the initial rate times ``(1 − iter/max_iter)^power``."""
    return max(0.0, 1.0 - step / max(1, max_steps)) ** power


def _optimizer_defaults(name: str) -> dict[str, Any]:
    params = inspect.signature(OPTIMIZERS[name]).parameters
    return {key: p.default for key, p in params.items() if key != "params" and p.kind is not inspect.Parameter.VAR_KEYWORD}


def _name(section: str, cfg: Mapping[str, Any], choices: Iterable[str], default: str) -> str:
    name = cfg.get("name", default)
    choices = list(choices)
    if not isinstance(name, str) or name.lower() not in choices:
        raise ConfigError(f"{section}.name: unknown {section.split('.')[-1]} {name!r}{did_you_mean(name, choices)}; choose from {choices}")
    return name.lower()


def check_optimizer(cfg: Any, section: str = "train.optimizer") -> None:
    """Keys, types and ranges of the optimizer section (the torch optimizer's own keywords)."""
    check_mapping(section, cfg)
    name = _name(section, cfg, OPTIMIZERS, "adam")
    defaults = _optimizer_defaults(name)
    options = {k: v for k, v in cfg.items() if k != "name"}
    check_keys(f"{section} ({name})", options, ["name", *defaults])
    for key, value in options.items():
        default = defaults[key]
        where = f"{section}.{key}"
        if isinstance(default, bool):
            check_value(where, value, bool)
        elif isinstance(default, (int, float)) or key == "lr":
            check_value(where, value, float)
        elif isinstance(default, tuple):
            check_value(where, value, tuple)
            if len(value) != len(default) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise ConfigError(f"{where}: expected {len(default)} numbers like {list(default)}, got {value!r}")
            if key == "betas" and not all(0 <= v < 1 for v in value):
                raise ConfigError(f"{where}: each beta must be in [0, 1), got {value!r}")
    if "lr" in options and not options["lr"] > 0:
        raise ConfigError(f"{section}.lr: the learning rate must be > 0, got {options['lr']!r}")
    for key in _NON_NEGATIVE:
        if key in options and options[key] < 0:
            raise ConfigError(f"{section}.{key}: must be >= 0, got {options[key]!r}")


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any]) -> Optimizer:
    """The torch optimizer ``cfg`` names, over ``params``."""
    check_optimizer(cfg)
    options = dict(cfg)
    name = str(options.pop("name", "adam")).lower()
    return OPTIMIZERS[name](params, **options)


def check_lr_schedule(cfg: Any, section: str = "train.lr_schedule") -> None:
    """Keys, types and ranges of the schedule section (the keyword options of :func:`build_scheduler`)."""
    check_mapping(section, cfg)
    _name(section, cfg, SCHEDULES, "poly")
    params = inspect.signature(build_scheduler).parameters
    options = {k: p for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    check_keys(section, cfg, ["name", *options])
    for key in options:
        if key in cfg:
            check_value(f"{section}.{key}", cfg[key], int if isinstance(options[key].default, int) and key.endswith("_steps") else float)
    if "power" in cfg and not cfg["power"] > 0:
        raise ConfigError(f"{section}.power: must be > 0 (0.9 in DeepLabv3), got {cfg['power']!r}")
    if "warmup_steps" in cfg and cfg["warmup_steps"] < 0:
        raise ConfigError(f"{section}.warmup_steps: must be >= 0, got {cfg['warmup_steps']!r}")


def build_scheduler(optimizer: Optimizer, name: str, max_steps: int, *, power: float = 0.9, warmup_steps: int = 0) -> LambdaLR:
    """``poly``, ``cosine`` or ``constant``, with optional linear warm-up; one step per iteration."""
    name = name.lower()

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
        if name == "poly":
            return warm * poly_factor(step, max_steps, power)
        if name == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, max_steps) / max(1, max_steps)))
        return warm

    if name not in SCHEDULES:
        raise ConfigError(f"train.lr_schedule.name: unknown lr schedule {name!r}; choose from {list(SCHEDULES)}")
    return LambdaLR(optimizer, factor)
