"""What a state dict seems to hold, and how to convert it: the hint of every conversion error."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from ..backbones.weights import strip_module_prefix

# Dense layers in blocks 3 and 4 → the official model (cfgs/DenseASPP{121,161,169,201}.py).
OFFICIAL_VARIANTS = {(24, 16): "121", (36, 24): "161", (32, 32): "169", (48, 32): "201"}
# Units of torchvision's ResNet layer3 → the architecture.
RESNET_LAYER3_UNITS = {6: "resnet50", 23: "resnet101"}


def describe_state_dict(keys: Iterable[str]) -> str | None:
    """What a state dict seems to hold and how to convert it, for error messages."""
    keys = list(strip_module_prefix(dict.fromkeys(keys)))
    if any(k.startswith(("ASPP_", "classification.")) for k in keys):
        # Dense layers are numbered from 1: the largest number is the count.
        layers = tuple(_largest(keys, rf"features\.denseblock{b}\.denselayer(\d+)\.") for b in (3, 4))
        variant = OFFICIAL_VARIANTS.get(layers)
        config = f"denseaspp/denseaspp{variant}_cityscapes" if variant else "denseaspp/denseaspp161_cityscapes"
        return f"It looks like an official DenseASPP{variant or ''} checkpoint: use --from denseaspp-official --config {config}."
    if any(k.startswith("classifier.0.convs.") for k in keys):
        if any(k.startswith("backbone.16.") for k in keys):
            arch = "mobilenet_v3_large"
        else:
            units = _largest(keys, r"backbone\.layer3\.(\d+)\.") + 1  # units numbered from 0
            arch = RESNET_LAYER3_UNITS.get(units, "resnet")
        if any(k.startswith("aux_classifier.") for k in keys):
            aux, no_aux = "with", ""
        else:
            aux, no_aux = "without", " --set model.aux_head=null"
        return (
            f"It looks like a torchvision DeepLabV3 ({arch}) state dict {aux} an auxiliary classifier: "
            f"use --from torchvision-deeplabv3 --config torchvision/deeplabv3_{arch}{no_aux}."
        )
    if any(k.startswith(("model.head.", "head.")) for k in keys):
        return "It is already an atrous checkpoint: use it directly (atrous validate --checkpoint FILE)."
    if any(k.startswith(("fc.", "classifier.weight")) for k in keys):
        return "It looks like an ImageNet classification network: use it as model.backbone.pretrained instead."
    return None


def _largest(keys: Sequence[str], pattern: str) -> int:
    """The largest number ``pattern``'s group captures in ``keys`` (-1 if none)."""
    return max((int(m.group(1)) for k in keys if (m := re.match(pattern, k))), default=-1)
