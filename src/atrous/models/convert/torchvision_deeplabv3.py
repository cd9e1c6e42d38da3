"""``torchvision-deeplabv3``: torchvision's ``deeplabv3_resnet50/101`` and
``deeplabv3_mobilenet_v3_large`` (``torchvision/models/segmentation/deeplabv3.py``) for the
packaged configs ``torchvision/deeplabv3_*``::

    backbone.{i}.*          → backbone.features.{i}.*   (MobileNetV3: the ``features`` blocks)
    backbone.*              → backbone.*                (ResNet: same names)
    classifier.0.*          → head.*                    (ASPP: convs, project)
    classifier.{1,2}.*      → head.refine.{0,1}.*       (DeepLabHead's extra 3×3 conv-BN)
    classifier.4.*          → classifier.*
    aux_classifier.*        → aux_head.*                (FCNHead)

Without a file, torchvision's default weights for the config's backbone are read from torch.hub's
cache, downloaded there if missing (:func:`atrous.models.backbones.weights.hub_file`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..backbones.weights import PretrainedWeightsError, hub_checkpoint_path, hub_file
from ..segmentor import Segmentor
from .core import ConversionError, Rule, SourceFormat, StateDict, convert_state_dict

# torchvision builder per backbone of a config.
BUILDERS = {
    "resnet50": "deeplabv3_resnet50",
    "resnet101": "deeplabv3_resnet101",
    "mobilenet_v3_large": "deeplabv3_mobilenet_v3_large",
}

RULES: tuple[Rule, ...] = (
    (re.compile(r"^backbone\.(\d+)\."), r"backbone.features.\1."),
    (re.compile(r"^backbone\."), "backbone."),
    (re.compile(r"^classifier\.0\."), "head."),
    (re.compile(r"^classifier\.1\."), "head.refine.0."),
    (re.compile(r"^classifier\.2\."), "head.refine.1."),
    (re.compile(r"^classifier\.4\."), "classifier."),
    (re.compile(r"^aux_classifier\."), "aux_head."),
)


def torchvision_weights(config: Mapping[str, Any]) -> Any:
    """torchvision's default DeepLabV3 weights (a ``WeightsEnum`` member) for a config's backbone."""
    from torchvision.models import get_model_weights

    backbone = config["model"]["backbone"]["name"]
    if backbone not in BUILDERS:
        raise ConversionError(
            f"torchvision has DeepLabV3 weights for backbones {sorted(BUILDERS)}, "
            f"not {backbone!r}: use a packaged config torchvision/deeplabv3_* (atrous zoo lists them)"
        )
    return get_model_weights(BUILDERS[backbone]).DEFAULT


def locate(file: str | os.PathLike | None, config: Mapping[str, Any]) -> Path:
    """``file``, or without one torchvision's weights in torch.hub's cache (downloaded there if
    missing). A missing file raises an error that says where to get it."""
    path = Path(file).expanduser() if file is not None else None
    if path is not None and path.is_file():
        return path
    weights = torchvision_weights(config)
    if path is not None:
        raise ConversionError(
            f"{path} does not exist. torchvision's {type(weights).__name__}.{weights.name} is {weights.url}: download "
            f"it and pass its path, or leave FILE out to use (and fill) torch.hub's cache, {hub_checkpoint_path(weights)}."
        )
    try:
        return hub_file(weights, instead="pass the file: `atrous convert --from torchvision-deeplabv3 FILE ...`")
    except PretrainedWeightsError as err:
        raise ConversionError(str(err)) from err


FORMAT = SourceFormat("torchvision-deeplabv3", lambda model: RULES, locate)


def convert_torchvision_deeplabv3(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | Segmentor
) -> StateDict:
    """torchvision DeepLabV3 state dict → state dict of ``build_model(config)`` (see module docstring).

    ``config``: a full config, its ``model`` section, or the model already built from it.
    """
    return convert_state_dict(FORMAT, state_dict, config)
