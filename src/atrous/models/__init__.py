"""Models: backbones, context heads and the segmentor (importable without Lightning; the names
below import torch on first use)."""

from ..lazy import lazy_attributes

__all__ = ["Segmentor", "build_backbone", "build_head", "build_model"]
__getattr__, __dir__ = lazy_attributes(__name__, {
    "Segmentor": ".segmentor", "build_backbone": ".build", "build_head": ".build", "build_model": ".build",
})
