"""A tiny DenseASPP segmentor (ResNet-18 cut after layer2, output stride 8, the synthetic
streets' 19 classes, randomised BatchNorm statistics) for the engine and quantization tests."""

from __future__ import annotations

from pathlib import Path

import torch
from helpers_models import randomized_batchnorm

from atrous.models import build_model

CONFIG = {
    "model": {
        "num_classes": 19,  # the synthetic streets' classes
        "backbone": {"name": "resnet18", "output_stride": 8, "num_stages": 2, "pretrained": False},
        "head": {"name": "denseaspp", "atrous_rates": [3, 6], "growth_channels": 16, "bottleneck_channels": 32},
    },
    "data": {
        "dataset": {"name": "synthetic", "image_size": [64, 96]},
        "train": {"split": "train", "length": 6},
        "val": {"split": "val", "length": 3},
        "batch_size": 2,
        "num_workers": 0,
    },
    "train": {"max_epochs": 1, "progress_bar": False, "accelerator": "cpu"},
}


def tiny_model(seed: int = 0, num_stages: int = 2) -> torch.nn.Module:
    """``CONFIG``'s model; ``num_stages=3`` keeps layer3 (dilated: output stride 8, or 16 when switched)."""
    torch.manual_seed(seed)
    cfg = {**CONFIG["model"], "backbone": {**CONFIG["model"]["backbone"], "num_stages": num_stages}}
    model = build_model(cfg, pretrained_backbone=False)
    return randomized_batchnorm(model, seed=seed + 1).eval()


def save_checkpoint(path: Path, seed: int = 0) -> Path:
    """``tiny_model(seed)`` in the layout ``atrous fit`` writes (config in hyper_parameters)."""
    model = tiny_model(seed)
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": CONFIG, "class_names": [f"c{i}" for i in range(19)],
                                     "ignore_index": 255}}, path)
    return path
