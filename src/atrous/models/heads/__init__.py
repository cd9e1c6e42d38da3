"""Context heads: DenseASPP, DeepLabv3 ASPP, DeepLabv3 cascaded blocks, FCN (none)."""

from __future__ import annotations

from torch import nn

from .aspp import ASPPHead
from .cascade import CascadeHead
from .denseaspp import DenseASPPHead, DenseASPPLayer
from .fcn import AuxHead, FCNHead

HEADS: dict[str, type[nn.Module]] = {
    "denseaspp": DenseASPPHead,
    "aspp": ASPPHead,
    "cascade": CascadeHead,
    "fcn": FCNHead,
}

__all__ = ["HEADS", "ASPPHead", "AuxHead", "CascadeHead", "DenseASPPHead", "DenseASPPLayer", "FCNHead"]
