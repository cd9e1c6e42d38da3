"""Convert published checkpoints into atrous checkpoints.

Two sources, each a plain state dict renamed onto the :class:`~atrous.models.Segmentor` that
a config builds; every key of the file must be used and every weight of the model filled:

* ``denseaspp-official``: the official DenseASPP Cityscapes models (DeepMotionAIResearch/DenseASPP,
  ``models/DenseASPP.py``; PyTorch 0.3 state dicts saved from ``nn.DataParallel``) for the
  packaged configs ``denseaspp/denseaspp{121,161,169,201}_cityscapes``::

      module.                                    → (dropped)
      features.denseblock*.denselayer*.norm.1.*  → backbone.features.denseblock*.denselayer*.norm1.*
      features.*  (conv0, transition1..4, norm5) → backbone.features.*
      ASPP_{rate}.{norm,conv}.{1,2}.*            → head.layers.{i}.{norm,conv}{1,2}.*  (rate = atrous_rates[i])
      classification.1.*                         → classifier.*

* ``torchvision-deeplabv3``: torchvision's ``deeplabv3_resnet50/101`` and
  ``deeplabv3_mobilenet_v3_large`` (``torchvision/models/segmentation/deeplabv3.py``) for the
  packaged configs ``torchvision/deeplabv3_*``::

      backbone.{i}.*          → backbone.features.{i}.*   (MobileNetV3: the ``features`` blocks)
      backbone.*              → backbone.*                (ResNet: same names)
      classifier.0.*          → head.*                    (ASPP: convs, project)
      classifier.{1,2}.*      → head.refine.{0,1}.*       (DeepLabHead's extra 3×3 conv-BN)
      classifier.4.*          → classifier.*
      aux_classifier.*        → aux_head.*                (FCNHead)

Files are read with ``torch.load(weights_only=True)``: PyTorch 0.3's legacy (non-zip) format
loads too (its tensors are rebuilt by ``torch._utils._rebuild_tensor``, which is allow-listed).
BatchNorm batch counters, absent from PyTorch 0.3 files, start at zero.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, load_config
from ..errors import UserError
from ..io import atomic_write
from .backbones.weights import (
    PretrainedWeightsError,
    hub_checkpoint_path,
    legacy_densenet_key,
    unwrap_state_dict,
)
from .build import build_model
from .heads import DenseASPPHead
from .segmentor import Segmentor

FORMATS = ("denseaspp-official", "torchvision-deeplabv3")

OFFICIAL_DENSEASPP_URL = "https://github.com/DeepMotionAIResearch/DenseASPP#2-download-pretrained-model"
# The official README's only released model (Google Drive) and where the official demo.py reads it.
OFFICIAL_DENSEASPP161 = "https://drive.google.com/file/d/1sCr-OkMUayaHAijdQrzndKk2WW78MVZG/view"
OFFICIAL_DENSEASPP_DEFAULT_PATH = "weights/denseASPP161.pkl"

# Dense layers in blocks 3 and 4 → the official model (cfgs/DenseASPP{121,161,169,201}.py).
_OFFICIAL_VARIANTS = {(24, 16): "121", (36, 24): "161", (32, 32): "169", (48, 32): "201"}
# torchvision builder per backbone of a config.
_TORCHVISION_BUILDERS = {
    "resnet50": "deeplabv3_resnet50",
    "resnet101": "deeplabv3_resnet101",
    "mobilenet_v3_large": "deeplabv3_mobilenet_v3_large",
}

_ASPP_KEY = re.compile(r"^ASPP_(\d+)\.(norm|conv)\.([12])\.(.+)$")
_TORCHVISION_RULES = (
    (re.compile(r"^backbone\.(\d+)\."), r"backbone.features.\1."),
    (re.compile(r"^backbone\."), "backbone."),
    (re.compile(r"^classifier\.0\."), "head."),
    (re.compile(r"^classifier\.1\."), "head.refine.0."),
    (re.compile(r"^classifier\.2\."), "head.refine.1."),
    (re.compile(r"^classifier\.4\."), "classifier."),
    (re.compile(r"^aux_classifier\."), "aux_head."),
)

StateDict = dict[str, torch.Tensor]


class ConversionError(UserError, ValueError):
    """A file cannot be converted: unreadable, or its weights do not fit the config's model."""


# -- the two converters ---------------------------------------------------------------------
def convert_denseaspp_official(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | Segmentor
) -> StateDict:
    """Official DenseASPP state dict → state dict of ``build_model(config)`` (see module docstring).

    ``config``: a full config, its ``model`` section, or the model already built from it.
    """
    model = config if isinstance(config, Segmentor) else target_model(config)
    rates = list(model.head.atrous_rates) if isinstance(model.head, DenseASPPHead) else []
    state = strip_module_prefix(state_dict)
    renamed = {key: _official_target(key, rates) for key in state}
    return match_state_dict(state, renamed, model)


def _official_target(key: str, rates: Sequence[int]) -> str | None:
    if key.startswith("features."):
        # The dense layers' "norm.1", "conv.2" ... are torchvision's legacy DenseNet names.
        return "backbone." + legacy_densenet_key(key)
    if key.startswith("classification.1."):
        return "classifier." + key.removeprefix("classification.1.")
    found = _ASPP_KEY.match(key)
    if found:
        rate, kind, index, rest = found.groups()
        if int(rate) in rates:
            return f"head.layers.{rates.index(int(rate))}.{kind}{index}.{rest}"
    return None


def convert_torchvision_deeplabv3(
    state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | Segmentor
) -> StateDict:
    """torchvision DeepLabV3 state dict → state dict of ``build_model(config)`` (see module docstring).

    ``config``: a full config, its ``model`` section, or the model already built from it.
    """
    model = config if isinstance(config, Segmentor) else target_model(config)
    state = strip_module_prefix(state_dict)
    renamed = {}
    for key in state:
        renamed[key] = next((rule.sub(to, key, count=1) for rule, to in _TORCHVISION_RULES if rule.match(key)), None)
    return match_state_dict(state, renamed, model)


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], Mapping[str, Any] | Segmentor], StateDict]] = {
    "denseaspp-official": convert_denseaspp_official,
    "torchvision-deeplabv3": convert_torchvision_deeplabv3,
}


# -- shared steps ---------------------------------------------------------------------------
def target_model(config: Mapping[str, Any]) -> Segmentor:
    """The model a config (full or its ``model`` section) builds, without pretrained downloads."""
    return build_model(config, pretrained_backbone=False)


def strip_module_prefix(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Drop ``nn.DataParallel``'s ``module.`` prefix (the official checkpoints have it)."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def match_state_dict(state: Mapping[str, torch.Tensor], renamed: Mapping[str, str | None], model: Segmentor) -> StateDict:
    """Check a renamed state dict against ``model``: every source key used, every model weight
    filled with a tensor of its shape. BatchNorm batch counters missing from the file start at 0.

    ``renamed`` maps each source key to its model key (``None``: no rule applies).
    Raises :class:`ConversionError` listing the first few problems of each kind.
    """
    target = model.state_dict()
    out: StateDict = {}
    unused, mismatched = [], []
    for source, key in renamed.items():
        if key is None or key not in target or key in out:
            unused.append(source)
        elif tuple(state[source].shape) != tuple(target[key].shape):
            mismatched.append(f"{source} {tuple(state[source].shape)} → {key} {tuple(target[key].shape)}")
        else:
            out[key] = state[source]
    missing = []
    for key, value in target.items():
        if key not in out:
            if key.endswith("num_batches_tracked"):
                out[key] = torch.zeros_like(value)
            else:
                missing.append(key)
    if unused or missing or mismatched:
        parts = []
        if unused:
            parts.append(f"{len(unused)} of its keys fit no weight of the model (first: {unused[:4]})")
        if missing:
            parts.append(f"{len(missing)} weights of the model are not in it (first: {missing[:4]})")
        if mismatched:
            parts.append(f"{len(mismatched)} shapes differ (first: {mismatched[:3]})")
        raise ConversionError("; ".join(parts))
    return out


def read_state_dict(path: str | os.PathLike) -> StateDict:
    """Tensors of a checkpoint file (``weights_only``; PyTorch 0.3 legacy files included)."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except UnicodeDecodeError:  # a Python 2 pickle with non-ASCII byte strings
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True, encoding="latin1")
        except Exception as err:
            raise ConversionError(f"{path}: cannot be read as a PyTorch file ({err})") from err
    except Exception as err:  # not a torch file, truncated, or pickled code (refused, never run)
        raise ConversionError(
            f"{path}: cannot be read as a PyTorch state dict with weights_only=True ({err}). "
            "atrous reads tensors only; a file that pickles code is refused."
        ) from err
    try:
        return unwrap_state_dict(raw, str(path))
    except PretrainedWeightsError as err:
        raise ConversionError(str(err)) from err


def describe_state_dict(keys: Iterable[str]) -> str | None:
    """What a state dict seems to hold and how to convert it, for error messages."""
    keys = [k.removeprefix("module.") for k in keys]
    if any(k.startswith(("ASPP_", "classification.")) for k in keys):
        # Dense layers are numbered from 1: the largest number is the count.
        layers = tuple(_largest(keys, rf"features\.denseblock{b}\.denselayer(\d+)\.") for b in (3, 4))
        variant = _OFFICIAL_VARIANTS.get(layers)
        config = f"denseaspp/denseaspp{variant}_cityscapes" if variant else "denseaspp/denseaspp161_cityscapes"
        return f"It looks like an official DenseASPP{variant or ''} checkpoint: use --from denseaspp-official --config {config}."
    if any(k.startswith("classifier.0.convs.") for k in keys):
        if any(k.startswith("backbone.16.") for k in keys):
            arch = "mobilenet_v3_large"
        else:
            units = _largest(keys, r"backbone\.layer3\.(\d+)\.") + 1  # units numbered from 0
            arch = {6: "resnet50", 23: "resnet101"}.get(units, "resnet")
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


# -- where the files are --------------------------------------------------------------------
def torchvision_weights(config: Mapping[str, Any]) -> Any:
    """torchvision's default DeepLabV3 weights (a ``WeightsEnum`` member) for a config's backbone."""
    from torchvision.models import get_model_weights

    backbone = config["model"]["backbone"]["name"]
    if backbone not in _TORCHVISION_BUILDERS:
        raise ConversionError(
            f"torchvision has DeepLabV3 weights for backbones {sorted(_TORCHVISION_BUILDERS)}, "
            f"not {backbone!r}: use a packaged config torchvision/deeplabv3_* (atrous zoo lists them)"
        )
    return get_model_weights(_TORCHVISION_BUILDERS[backbone]).DEFAULT


def locate_file(source_format: str, file: str | os.PathLike | None, config: Mapping[str, Any]) -> Path:
    """The file to convert; without ``file``, torchvision's weights in torch.hub's cache
    (downloaded there if missing). A missing file raises an error that says where to get it."""
    if source_format == "denseaspp-official":
        where = (
            f"The official DenseASPP161 Cityscapes model (denseASPP161.pkl, 142.7 MB; the only one released) "
            f"is linked from {OFFICIAL_DENSEASPP_URL} ({OFFICIAL_DENSEASPP161}); the official demo.py reads "
            f"it from ./{OFFICIAL_DENSEASPP_DEFAULT_PATH}. Download it and pass its path as FILE."
        )
        if file is None:
            raise ConversionError(f"--from denseaspp-official needs the checkpoint FILE. {where}")
        path = Path(file).expanduser()
        if not path.is_file():
            raise ConversionError(f"{path} does not exist. {where}")
        return path
    path = Path(file).expanduser() if file is not None else None
    if path is not None and path.is_file():
        return path
    weights = torchvision_weights(config)
    target = hub_checkpoint_path(weights)
    name = f"{type(weights).__name__}.{weights.name}"
    if path is not None:
        raise ConversionError(
            f"{path} does not exist. torchvision's {name} is {weights.url}: download it and pass its path, "
            f"or leave FILE out to use (and fill) torch.hub's cache, {target}."
        )
    if not target.is_file():
        _download(weights.url, target, name)
    return target


def _download(url: str, target: Path, name: str) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = torch.hub.HASH_REGEX.search(target.name)
        torch.hub.download_url_to_file(url, str(target), digest.group(1) if digest else None, progress=False)
    except Exception as err:  # URLError, HTTPError, OSError, hash mismatch
        raise ConversionError(
            f"Could not download torchvision weights {name}: {err}.\n"
            f"If this machine is offline, download {url} elsewhere and put the file at {target} "
            f"(or set TORCH_HOME), or pass the file: `atrous convert --from torchvision-deeplabv3 FILE ...`."
        ) from err


# -- the front door -------------------------------------------------------------------------
def convert_checkpoint(
    source_format: str,
    file: str | os.PathLike | None,
    config_path: str | os.PathLike,
    output: str | os.PathLike,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Convert ``file`` (format ``source_format``) for the model of ``config_path`` and write an
    atrous checkpoint at ``output`` atomically, readable by ``atrous validate|test --checkpoint``
    and :func:`atrous.models.checkpoint.load_segmentor`.

    The checkpoint holds ``state_dict`` (keys ``model.…``) and ``hyper_parameters`` (``config``
    as given, ``class_names``, ``ignore_index``), as ``atrous fit`` writes.
    Returns a summary: ``output``, ``file``, ``tensors``, ``params``.
    """
    if source_format not in CONVERTERS:
        raise ConversionError(f"unknown source format {source_format!r}; choose from {list(FORMATS)}")
    config = load_config(config_path, overrides)
    try:  # a config error shows before a large file is read
        model = target_model(config)
    except ConfigError as err:
        raise ConfigError(f"{config_path}: {err}") from err
    path = locate_file(source_format, file, config)
    raw = read_state_dict(path)
    try:
        state = CONVERTERS[source_format](raw, model)
    except ConversionError as err:
        hint = describe_state_dict(raw)
        raise ConversionError(
            f"{path} does not fit the model of {config_path} as --from {source_format}: {err}."
            + (f" {hint}" if hint else "")
        ) from err
    model.load_state_dict(state)
    class_names, ignore_index = label_space(config, model.num_classes)
    checkpoint = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": {"config": config, "class_names": class_names, "ignore_index": ignore_index},
        "converted_from": {"format": source_format, "file": str(path)},
    }
    written = atomic_write(output, lambda tmp: torch.save(checkpoint, tmp))
    return {
        "output": str(written),
        "file": str(path),
        "tensors": len(raw),
        "params": sum(p.numel() for p in model.parameters()),
    }


def label_space(config: Mapping[str, Any], num_classes: int) -> tuple[list[str] | None, int]:
    """Class names and ignore index of the config's dataset, as ``atrous fit`` stores them
    (``None`` names when the dataset only knows them from its files, or they do not fit)."""
    from ..data.base import ClassInfo
    from ..data.build import dataset_class

    dataset = dict((config.get("data") or {}).get("dataset") or {"name": "synthetic"})
    if dataset.get("name") == "cityscapes":
        from ..data.cityscapes import CLASSES_19, CLASSES_20

        info = CLASSES_20 if str(dataset.get("variant", "19")) == "20" else CLASSES_19
    else:
        info = getattr(dataset_class(str(dataset.get("name"))), "classes", None)
    if not isinstance(info, ClassInfo):
        return None, 255
    names = list(info.names) if len(info.names) == num_classes else None
    return names, info.ignore_index
