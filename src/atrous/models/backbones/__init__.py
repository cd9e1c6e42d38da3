"""Backbones: torchvision networks and timm CNNs dilated to a chosen output stride.

``BACKBONES`` maps a config name to ``(class, fixed keyword arguments)``; the config's other
keys are the class's keyword arguments. ``timm/<model>`` names any timm CNN
(:class:`TimmBackbone`); :func:`backbone_entry` resolves both.
"""

from __future__ import annotations

from typing import Any

from .base import Backbone, FeatureInfo, StagePlan, plan_stages
from .convnext import ConvNeXtBackbone
from .densenet import DenseNetBackbone
from .mobilenet import MobileNetV3Backbone
from .resnet import ResNetBackbone
from .timm_backbone import TIMM_PREFIX, TimmBackbone
from .weights import PretrainedWeightsError

BACKBONES: dict[str, tuple[type[Backbone], dict[str, Any]]] = {
    **{a: (DenseNetBackbone, {"arch": a}) for a in ("densenet121", "densenet161", "densenet169", "densenet201")},
    **{a: (ResNetBackbone, {"arch": a}) for a in ("resnet18", "resnet34", "resnet50", "resnet101")},
    "mobilenet_v3_large": (MobileNetV3Backbone, {}),
    **{a: (ConvNeXtBackbone, {"arch": a}) for a in ("convnext_tiny", "convnext_small", "convnext_base")},
}



def is_backbone_name(name: object) -> bool:
    """A registered name or ``timm/<model>``."""
    return isinstance(name, str) and (name in BACKBONES or (name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)))


def backbone_entry(name: str) -> tuple[type[Backbone], dict[str, Any]]:
    """``(class, fixed keyword arguments)`` of a backbone name (see :func:`is_backbone_name`)."""
    if name.startswith(TIMM_PREFIX):
        return TimmBackbone, {"model": name[len(TIMM_PREFIX):]}
    return BACKBONES[name]


__all__ = [
    "TimmBackbone",
    "backbone_entry",
    "is_backbone_name",
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
