"""Backbones: torchvision networks dilated to a chosen output stride.

``BACKBONES`` maps a config name to ``(class, fixed keyword arguments)``; the config's other
keys are the class's keyword arguments.
"""

from __future__ import annotations

from typing import Any

from .base import Backbone, FeatureInfo, StagePlan, plan_stages
from .convnext import ConvNeXtBackbone
from .densenet import DenseNetBackbone
from .mobilenet import MobileNetV3Backbone
from .resnet import ResNetBackbone
from .weights import PretrainedWeightsError

BACKBONES: dict[str, tuple[type[Backbone], dict[str, Any]]] = {
    **{a: (DenseNetBackbone, {"arch": a}) for a in ("densenet121", "densenet161", "densenet169", "densenet201")},
    **{a: (ResNetBackbone, {"arch": a}) for a in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "mobilenet_v3_large": (MobileNetV3Backbone, {}),
    **{a: (ConvNeXtBackbone, {"arch": a}) for a in ("convnext_tiny", "convnext_small", "convnext_base")},
}

__all__ = [
    "BACKBONES",
    "Backbone",
    "ConvNeXtBackbone",
    "DenseNetBackbone",
    "FeatureInfo",
    "MobileNetV3Backbone",
    "PretrainedWeightsError",
    "ResNetBackbone",
    "StagePlan",
    "plan_stages",
]
