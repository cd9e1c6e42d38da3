"""The ``train`` section of a config: the training protocol, validated key by key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..config import ConfigError


@dataclass
class TrainConfig:
    """Training protocol. Seed (§4.3): Adam, lr 3e-4, weight decay 1e-5, batch 8, 60 epochs.
    DeepLabv3 (§4.1): SGD momentum 0.9, lr 0.007, poly power 0.9, 30K iterations at output
    stride 16 with BN training, then 30K at 8 with frozen BN and lr 0.001."""

    max_epochs: int | None = 60  # stop after this many epochs ...
    max_steps: int = -1  # ... or iterations (DeepLabv3 counts iterations); -1: unused
    optimizer: dict[str, Any] = field(default_factory=lambda: {"name": "adam", "lr": 3e-4, "weight_decay": 1e-5})
    lr_schedule: dict[str, Any] = field(default_factory=lambda: {"name": "poly", "power": 0.9})
    loss: dict[str, Any] = field(default_factory=dict)  # SegmentationLoss options: ohem_thresh, aux_weight, ...
    freeze_bn: bool = False  # keep every BatchNorm in eval mode (DeepLabv3 fine-tuning at OS 8)
    init_checkpoint: str | None = None  # start from these weights (e.g. the OS-16 stage's best)
    precision: str = "32-true"  # 32-true | 16-mixed | bf16-mixed
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None
    sync_batchnorm: bool = False
    accelerator: str = "auto"
    devices: int | str = 1
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

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> TrainConfig:
        cfg = dict(cfg or {})
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(names))
        if unknown:
            raise ConfigError(f"train: unknown key(s) {unknown}; valid keys: {names}")
        return cls(**cfg)
