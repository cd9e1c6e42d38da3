"""``denseaspp-official``: the official DenseASPP Cityscapes models (DeepMotionAIResearch/DenseASPP,
``models/DenseASPP.py``; PyTorch 0.3 state dicts saved from ``nn.DataParallel``) for the packaged
configs ``denseaspp/denseaspp{121,161,169,201}_cityscapes``::

    module.                                    → (dropped)
    features.denseblock*.denselayer*.norm.1.*  → backbone.features.denseblock*.denselayer*.norm1.*
    features.*  (conv0, transition1..4, norm5) → backbone.features.*
    ASPP_{rate}.{norm,conv}.{1,2}.*            → head.layers.{i}.{norm,conv}{1,2}.*  (rate = atrous_rates[i])
    classification.1.*                         → classifier.*

The configs build the official network exactly (``official_layout`` backbone, ``official: true``
head), so the weights need renaming only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..backbones.weights import legacy_densenet_key
from ..segmentor import Segmentor
from .core import ConversionError, Rule, SourceFormat, StateDict, convert_state_dict

URL = "https://github.com/DeepMotionAIResearch/DenseASPP#2-download-pretrained-model"
# The official README's only released model (Google Drive) and where the official demo.py reads it.
DENSEASPP161_URL = "https://drive.google.com/file/d/1sCr-OkMUayaHAijdQrzndKk2WW78MVZG/view"
DEFAULT_PATH = "weights/denseASPP161.pkl"

# The dense layers' "norm.1", "conv.2" ... are torchvision's legacy DenseNet names.
_FIXED_RULES: tuple[Rule, ...] = (
    (re.compile(r"^features\..*$"), lambda found: "backbone." + legacy_densenet_key(found.group(0))),
    (re.compile(r"^classification\.1\."), "classifier."),
)


def rules(model: Segmentor) -> list[Rule]:
    """The renaming rules onto ``model``: the fixed ones, and one per atrous rate of its head."""
    rates = getattr(model.head, "atrous_rates", ())
    per_rate: list[Rule] = [
        (re.compile(rf"^ASPP_{rate}\.(norm|conv)\.([12])\."), rf"head.layers.{i}.\1\2.") for i, rate in enumerate(rates)
    ]
    return [*_FIXED_RULES, *per_rate]


def locate(file: str | os.PathLike | None, config: Mapping[str, Any]) -> Path:
    """The official file the user downloaded: it cannot be fetched by script (Google Drive)."""
    where = (
        f"The official DenseASPP161 Cityscapes model (denseASPP161.pkl, 142.7 MB; the only one released) "
        f"is linked from {URL} ({DENSEASPP161_URL}); the official demo.py reads "
        f"it from ./{DEFAULT_PATH}. Download it and pass its path as FILE."
    )
    if file is None:
        raise ConversionError(f"--from denseaspp-official needs the checkpoint FILE. {where}")
    path = Path(file).expanduser()
    if not path.is_file():
        raise ConversionError(f"{path} does not exist. {where}")
    return path


FORMAT = SourceFormat("denseaspp-official", rules, locate)


def convert_denseaspp_official(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | Segmentor
) -> StateDict:
    """Official DenseASPP state dict → state dict of ``build_model(config)`` (see module docstring).

    ``config``: a full config, its ``model`` section, or the model already built from it.
    """
    return convert_state_dict(FORMAT, state_dict, config)

