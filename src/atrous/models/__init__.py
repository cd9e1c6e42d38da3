"""Models: backbones, context heads and the segmentor (importable without Lightning)."""

from .build import build_backbone, build_head, build_model
from .segmentor import Segmentor

__all__ = ["Segmentor", "build_backbone", "build_head", "build_model"]
