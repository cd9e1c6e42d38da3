"""The ``train`` section of a config: the training protocol, validated key by key.

:meth:`TrainConfig.from_mapping` is the one place this section is checked: every key must be a
field below (with a "did you mean" for a misspelling), every value of the field's type (from its
annotation), counts in range, the Trainer's ``precision``, ``accelerator`` and ``strategy``
names, and the ``optimizer``, ``lr_schedule``, ``loss`` and ``loggers`` entries against what their
builders accept. The result is frozen (mappings read-only, lists tuples): the loss, optimizer,
schedule, loggers and Trainer are built from it without checking it again.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import (
    ConfigError,
    ReadOnlyDict,
    check_fields,
    check_keys,
    check_mapping,
    check_value,
    did_you_mean,
    freeze,
)
from ..engines.choices import MEMORY_FORMATS
from .loggers import DEFAULT_LOGGERS, check_loggers
from .losses import check_loss
from .schedules import PARAMETER_GROUPS, check_lr_schedule, check_optimizer


@dataclass(frozen=True)
class TrainConfig:
    """Training protocol. The DenseASPP report (§4.3): Adam, lr 3e-4, weight decay 1e-5, batch 8,
    60 epochs.
    DeepLabv3 (§4.1): SGD momentum 0.9, lr 0.007, poly power 0.9, 30K iterations at output
    stride 16 with BN training, then 30K at 8 with frozen BN and lr 0.001."""

    max_epochs: int | None = 60  # stop after this many epochs ...
    max_steps: int = -1  # ... or iterations (DeepLabv3 counts iterations); -1: unused
    # the torch optimizer by name and its keyword arguments
    optimizer: Mapping[str, Any] = ReadOnlyDict({"name": "adam", "lr": 3e-4, "weight_decay": 1e-5})
    lr_schedule: Mapping[str, Any] = ReadOnlyDict({"name": "poly", "power": 0.9})  # schedules.build_scheduler's
    # SegmentationLoss options (ohem_thresh, aux_weight, class_weights, terms) or a list of terms
    loss: Mapping[str, Any] | tuple[Any, ...] = ReadOnlyDict()
    # learning rate of each part of the model, times optimizer.lr: {backbone: 0.1, head: 1, aux_head: 10}
    lr_multipliers: Mapping[str, float] = ReadOnlyDict()
    freeze_backbone_epochs: int = 0  # warm-up: the backbone's learning rate is 0 for this many epochs ...
    freeze_backbone_steps: int = 0  # ... or optimizer steps
    freeze_bn: bool = False  # keep every BatchNorm in eval mode (DeepLabv3 fine-tuning at OS 8)
    # start from these weights (e.g. the OS-16 stage's best): a checkpoint file or published weights' name
    init_checkpoint: str | None = None
    init_match_classes: bool = False  # with another class list: reuse the classifier rows of same-named classes
    # 32-true | 16-mixed | bf16-mixed | auto: bf16-mixed where the CPU (AMX, AVX512-BF16) or GPU computes bf16
    precision: str | int = "32-true"
    # auto: channels_last on the CPU (oneDNN's fast layout), NCHW on CUDA | channels_last | contiguous
    memory_format: str = "auto"
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    sync_batchnorm: bool = False
    accelerator: str = "auto"
    devices: int | str | tuple[int, ...] = 1  # a count, -1 (all), "auto", "0,1" or device indices
    num_nodes: int = 1
    strategy: str = "auto"
    seed: int = 0
    deterministic: bool = False
    output_dir: str = "runs/default"
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    progress_bar: bool = True
    loggers: tuple[Any, ...] = DEFAULT_LOGGERS  # tensorboard, csv, mlflow, wandb (names or {name: ..., options})

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> TrainConfig:
        """The section as a :class:`TrainConfig`; :class:`ConfigError` naming the key, the value
        and what is expected for anything wrong."""
        cfg = {} if cfg is None else cfg
        check_train_section(cfg)
        return cls(**{key: freeze(value) for key, value in cfg.items()})


def check_train_section(cfg: Mapping[str, Any] | None) -> None:
    """Validate a ``train`` section (see the module docstring); raises :class:`ConfigError`."""
    if cfg is None:
        return
    check_fields("train", TrainConfig, cfg)
    _check_ranges(cfg)
    _check_trainer_choices(cfg)
    if "optimizer" in cfg:
        check_optimizer(cfg["optimizer"])
    if "lr_schedule" in cfg:
        check_lr_schedule(cfg["lr_schedule"])
    if "loss" in cfg:
        check_loss(cfg["loss"])
    if "lr_multipliers" in cfg:
        _check_lr_multipliers(cfg["lr_multipliers"])
    if "loggers" in cfg:
        check_loggers(cfg["loggers"])


def _at_least(cfg: Mapping[str, Any], key: str, minimum: float, note: str = "") -> None:
    value = cfg.get(key)
    if value is not None and value < minimum:
        raise ConfigError(f"train.{key}: must be >= {minimum}{note}, got {value!r}")


def _check_ranges(cfg: Mapping[str, Any]) -> None:
    epochs = cfg.get("max_epochs", TrainConfig.max_epochs)
    steps = cfg.get("max_steps", TrainConfig.max_steps)
    if epochs is not None and epochs != -1 and epochs < 1:
        raise ConfigError(f"train.max_epochs: must be >= 1 (or -1: no epoch limit, with max_steps set), got {epochs!r}")
    if steps != -1 and steps < 1:
        raise ConfigError(f"train.max_steps: must be >= 1 (or -1: no step limit), got {steps!r}")
    if epochs in (None, -1) and steps == -1:
        raise ConfigError(
            f"train: max_epochs is {epochs!r} and max_steps is -1, so training would never end; "
            "set train.max_epochs (e.g. 60) or train.max_steps (e.g. 30000)"
        )
    if cfg.get("freeze_backbone_epochs") and cfg.get("freeze_backbone_steps"):
        raise ConfigError("train: set freeze_backbone_epochs or freeze_backbone_steps, not both")
    for key in ("freeze_backbone_epochs", "freeze_backbone_steps"):
        _at_least(cfg, key, 0)
    for key in ("accumulate_grad_batches", "num_nodes", "log_every_n_steps", "check_val_every_n_epoch"):
        _at_least(cfg, key, 1)
    _at_least(cfg, "gradient_clip_val", 0)
    _at_least(cfg, "seed", 0)
    if cfg.get("memory_format", "auto") not in MEMORY_FORMATS:
        raise ConfigError(f"train.memory_format: one of {list(MEMORY_FORMATS)}, got {cfg['memory_format']!r}")
    for key in ("limit_train_batches", "limit_val_batches"):
        value = cfg.get(key)
        if value is None:
            continue
        if value < 0 or (isinstance(value, float) and value > 1):
            raise ConfigError(
                f"train.{key}: a fraction in [0.0, 1.0] or a number of batches >= 0 (an integer), got {value!r}"
            )
    devices = cfg.get("devices")
    if (
        (isinstance(devices, int) and devices < 1 and devices != -1)
        or (isinstance(devices, str) and not re.fullmatch(r"auto|-1|\d+|(\d+\s*,\s*)*\d*", devices.strip()))
        or (isinstance(devices, list) and not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices))
    ):
        raise ConfigError(
            f"train.devices: a count >= 1, -1 (all), a list of device indices like [0, 1] or 'auto', got {devices!r}"
        )
    if "output_dir" in cfg and not str(cfg["output_dir"]).strip():
        raise ConfigError("train.output_dir: must name a folder, got an empty string")


# The precisions Lightning 2's Trainer documents (its ``precision`` argument).
DOCUMENTED_PRECISIONS = ("64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "transformer-engine",
                         "transformer-engine-float16", 64, 32, 16, "64", "32", "16", "bf16")


def lightning_choices() -> dict[str, tuple[Any, ...]]:
    """The names Lightning's Trainer takes for ``precision``, ``accelerator`` and ``strategy``
    (atrous adds ``auto`` precision: :func:`~atrous.engines.precision.choose_training_precision`).
    The precision names come from the type Lightning annotates them with, which it does not export;
    a Lightning without it gets the names its Trainer documents (:data:`DOCUMENTED_PRECISIONS`)."""
    from lightning.pytorch.accelerators import AcceleratorRegistry
    from lightning.pytorch.strategies import StrategyRegistry

    def literals(annotation: Any) -> tuple[Any, ...]:
        args = typing.get_args(annotation)
        return tuple(a for arg in args for a in (literals(arg) if typing.get_args(arg) else (arg,)))

    try:
        from lightning.fabric.plugins.precision.precision import _PRECISION_INPUT

        precisions = literals(_PRECISION_INPUT)
    except ImportError:
        precisions = DOCUMENTED_PRECISIONS
    return {
        "precision": ("auto", *precisions),
        "accelerator": ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())),
        "strategy": ("auto", *StrategyRegistry.available_strategies()),
    }


def _check_trainer_choices(cfg: Mapping[str, Any]) -> None:
    """The Trainer's names, and the pairings of them Lightning refuses whatever the machine."""
    choices = lightning_choices()
    for key, allowed in choices.items():
        value = cfg.get(key)
        if value is not None and (str(value).lower() if key == "strategy" else value) not in allowed:
            names = [str(a) for a in allowed]
            raise ConfigError(f"train.{key}: unknown {key} {value!r}{did_you_mean(value, names)}; choose from {names}")
    accelerator, devices = cfg.get("accelerator", "auto"), cfg.get("devices", 1)
    if accelerator == "cpu" and not (isinstance(devices, int) and devices >= 1
                                     or isinstance(devices, str) and devices.strip().isdigit() and int(devices) >= 1):
        raise ConfigError(f"train.devices: with accelerator cpu, a number of processes >= 1, got {devices!r}")
    if str(cfg.get("strategy", "auto")).lower().startswith("fsdp") and accelerator not in ("cuda", "gpu"):
        raise ConfigError(f"train.strategy: fsdp needs accelerator cuda (or gpu), got accelerator {accelerator!r}")


def _check_lr_multipliers(cfg: Any) -> None:
    check_mapping("train.lr_multipliers", cfg)
    check_keys("train.lr_multipliers", cfg, PARAMETER_GROUPS)
    for key, value in cfg.items():
        check_value(f"train.lr_multipliers.{key}", value, float)
        if value < 0:
            raise ConfigError(f"train.lr_multipliers.{key}: must be >= 0 (0 freezes that part), got {value!r}")
