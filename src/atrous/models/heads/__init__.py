"""Context heads: DenseASPP, DeepLabv3 ASPP, DeepLabv3 cascaded blocks, FCN (none)."""

from __future__ import annotations

from .aspp import ASPPHead
from .base import Head
from .cascade import CascadeHead
from .denseaspp import DenseASPPHead, DenseASPPLayer
from .fcn import AuxHead, FCNHead

HEADS: dict[str, type[Head]] = {
    "denseaspp": DenseASPPHead,
    "aspp": ASPPHead,
    "cascade": CascadeHead,
    "fcn": FCNHead,
}

__all__ = ["HEADS", "ASPPHead", "Head", "AuxHead", "CascadeHead", "DenseASPPHead", "DenseASPPLayer", "FCNHead"]
