"""Context heads: DenseASPP, DeepLabv3 ASPP, DeepLabv3 cascaded blocks, FCN (none), and the
DeepLabV3+ decoder over any of them."""

from __future__ import annotations

from .aspp import ASPPHead
from .base import Head
from .cascade import CascadeHead
from .deeplabv3plus import DeepLabV3PlusHead
from .denseaspp import DenseASPPHead, DenseASPPLayer
from .fcn import AuxHead, FCNHead

HEADS: dict[str, type[Head]] = {
    "denseaspp": DenseASPPHead,
    "aspp": ASPPHead,
    "cascade": CascadeHead,
    "fcn": FCNHead,
    "deeplabv3plus": DeepLabV3PlusHead,
}

__all__ = ["HEADS", "ASPPHead", "Head", "AuxHead", "CascadeHead", "DeepLabV3PlusHead", "DenseASPPHead", "DenseASPPLayer", "FCNHead"]
