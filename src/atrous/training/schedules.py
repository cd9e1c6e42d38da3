"""Optimizers and learning-rate schedules from the ``train`` section, stepped every iteration.

``train.optimizer``: ``{name: adam | adamw | sgd, lr: …, <keyword arguments of the torch
optimizer>}``; ``train.lr_schedule``: ``{name: poly | cosine | constant, power: 0.9,
warmup_steps: 0 | warmup_epochs: 0, warmup_mode: scale | sequential, warmup_start_factor: 0.01}``.
:func:`check_optimizer` and :func:`check_lr_schedule` validate both sections against what
:func:`build_optimizer` and :func:`build_scheduler` accept, so a wrong value is reported when the
config is loaded, not when training starts.

Parameter groups (:func:`parameter_groups`): the backbone, the head (with the classifier) and the
auxiliary head each get ``optimizer.lr`` times ``train.lr_multipliers[part]`` (torchvision's
reference trains its aux classifier at 10× the rate); the schedule scales every group by the same
factor, except a backbone held at rate 0 for a frozen-backbone warm-up.

Warm-up: ``scale`` multiplies the schedule (which runs over all steps) by ``(step + 1) / W`` for
the first ``W = warmup_steps`` steps; ``sequential`` is torchvision's reference
(``LinearLR(start_factor)`` for ``W`` steps, then the schedule over the remaining steps,
chained by ``SequentialLR``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..config import ConfigError, check_keys, check_mapping, check_value, did_you_mean, thaw

OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
SCHEDULES = ("poly", "cosine", "constant")
WARMUP_MODES = ("scale", "sequential")
PARAMETER_GROUPS = ("backbone", "head", "aux_head")
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


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], cfg: Mapping[str, Any]) -> Optimizer:
    """The torch optimizer ``cfg`` names (checked by :func:`check_optimizer` where the train
    section is parsed), over ``params`` (parameters or parameter groups)."""
    options = thaw(cfg)
    name = str(options.pop("name", "adam")).lower()
    return OPTIMIZERS[name](params, **options)


def optimizer_lr(cfg: Mapping[str, Any]) -> float:
    """The base learning rate of ``train.optimizer`` (the torch optimizer's default without ``lr``)."""
    name = str(cfg.get("name", "adam")).lower()
    return float(cfg["lr"]) if "lr" in cfg else float(_optimizer_defaults(name)["lr"])


def parameter_groups(
    model: torch.nn.Module, base_lr: float, multipliers: Mapping[str, float] | None = None
) -> list[dict[str, Any]]:
    """The trainable parameters of a segmentor as optimizer groups, one per part of
    :data:`PARAMETER_GROUPS` that has any (``backbone``; ``aux_head``; ``head``: the head, the
    classifier and anything else), each with ``lr = base_lr · multipliers[part]`` (default 1) and
    its ``name``."""
    multipliers = multipliers or {}
    params: dict[str, list[torch.nn.Parameter]] = {part: [] for part in PARAMETER_GROUPS}
    for key, p in model.named_parameters():
        if p.requires_grad:
            part = key.split(".", 1)[0]
            params[part if part in ("backbone", "aux_head") else "head"].append(p)
    return [
        {"params": group, "lr": base_lr * float(multipliers.get(part, 1.0)), "name": part}
        for part, group in params.items()
        if group
    ]


def check_lr_schedule(cfg: Any, section: str = "train.lr_schedule") -> None:
    """Keys, types and ranges of the schedule section (the keyword options of :func:`build_scheduler`)."""
    check_mapping(section, cfg)
    _name(section, cfg, SCHEDULES, "poly")
    params = inspect.signature(build_scheduler).parameters
    options = {k: p for k, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    check_keys(section, cfg, ["name", *options])
    for key, p in options.items():
        if key not in cfg:
            continue
        kind = str if isinstance(p.default, str) else int if key.endswith(("_steps", "_epochs")) else float
        check_value(f"{section}.{key}", cfg[key], kind)
    if "power" in cfg and not cfg["power"] > 0:
        raise ConfigError(f"{section}.power: must be > 0 (0.9 in DeepLabv3), got {cfg['power']!r}")
    for key in ("warmup_steps", "warmup_epochs"):
        if key in cfg and cfg[key] < 0:
            raise ConfigError(f"{section}.{key}: must be >= 0, got {cfg[key]!r}")
    if cfg.get("warmup_steps") and cfg.get("warmup_epochs"):
        raise ConfigError(f"{section}: set warmup_steps or warmup_epochs, not both")
    if "warmup_mode" in cfg and cfg["warmup_mode"] not in WARMUP_MODES:
        mode = cfg["warmup_mode"]
        raise ConfigError(f"{section}.warmup_mode: unknown mode {mode!r}{did_you_mean(mode, WARMUP_MODES)}; "
                          f"choose from {list(WARMUP_MODES)}")
    if "warmup_start_factor" in cfg and not 0 < cfg["warmup_start_factor"] <= 1:
        raise ConfigError(f"{section}.warmup_start_factor: must be in (0, 1] (torchvision: 0.01), "
                          f"got {cfg['warmup_start_factor']!r}")


def _decay(name: str, step: int, steps: int, power: float) -> float:
    """The schedule's factor at ``step`` of ``steps`` (no warm-up)."""
    if name == "poly":
        return poly_factor(step, steps, power)
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(1, steps)))
    return 1.0


def build_scheduler(
    optimizer: Optimizer,
    name: str,
    max_steps: int,
    frozen_steps: Mapping[int, int] | None = None,
    steps_per_epoch: int = 1,
    *,
    power: float = 0.9,
    warmup_steps: int = 0,
    warmup_epochs: int = 0,
    warmup_mode: str = "scale",
    warmup_start_factor: float = 0.01,
) -> LambdaLR:
    """``poly``, ``cosine`` or ``constant``, with optional linear warm-up (``warmup_mode``, see
    the module docstring) of ``warmup_steps``, or ``warmup_epochs`` of ``steps_per_epoch`` (as
    torchvision's ``--lr-warmup-epochs``); one step per iteration. ``frozen_steps`` maps
    parameter-group indices to a number of first steps at learning rate 0 (a frozen-backbone
    warm-up)."""
    name = name.lower()
    warmup_steps = warmup_steps or warmup_epochs * steps_per_epoch
    if name not in SCHEDULES:
        raise ConfigError(f"train.lr_schedule.name: unknown lr schedule {name!r}; choose from {list(SCHEDULES)}")
    if warmup_mode not in WARMUP_MODES:
        raise ConfigError(f"train.lr_schedule.warmup_mode: unknown mode {warmup_mode!r}; choose from {list(WARMUP_MODES)}")

    def factor(step: int) -> float:
        if not warmup_steps:
            return _decay(name, step, max_steps, power)
        if warmup_mode == "scale":
            return min(1.0, (step + 1) / warmup_steps) * _decay(name, step, max_steps, power)
        if step < warmup_steps:  # LinearLR(start_factor, total_iters=warmup_steps)
            return warmup_start_factor + (1 - warmup_start_factor) * step / warmup_steps
        return _decay(name, step - warmup_steps, max_steps - warmup_steps, power)

    def held(steps: int):
        return lambda step: 0.0 if step < steps else factor(step)

    frozen = frozen_steps or {}
    lambdas = [held(frozen[i]) if frozen.get(i) else factor for i in range(len(optimizer.param_groups))]
    return LambdaLR(optimizer, lambdas)
