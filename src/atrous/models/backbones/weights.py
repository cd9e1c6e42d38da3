"""Load torchvision ImageNet weights into the networks our backbones wrap.

``pretrained`` accepts:

* ``False`` / ``None`` — random initialisation;
* ``True`` — torchvision's default weight enum for the architecture (``DEFAULT``);
* the name of an enum member, e.g. ``"IMAGENET1K_V2"``;
* a path to a local state dict (``.pth``) — torchvision's own files, or any checkpoint whose
  ``state_dict``/``model`` entry holds the classification network's keys.

Downloads go through torch.hub's cache. Offline, a missing file raises
:class:`PretrainedWeightsError` that names the URL and the exact path to place the file at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_weights


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights could not be found, downloaded or loaded."""


# torchvision's DenseNet files use the pre-2018 key names "norm.1", "conv.2", ...
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def remap_legacy_densenet_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``features.denseblock1.denselayer1.norm.1.weight`` → ``...denselayer1.norm1.weight``."""
    out = {}
    for key, value in state_dict.items():
        m = _DENSENET_OLD_KEY.match(key)
        out[m.group(1) + m.group(2) if m else key] = value
    return out


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the tensor mapping in a loaded checkpoint and strip DataParallel's ``module.``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedWeightsError(f"{source}: not a state dict (a mapping of names to tensors).")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def hub_checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch.hub looks for (and downloads) a torchvision weight file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def build_pretrained(
    arch: str,
    builder: Callable[..., nn.Module],
    pretrained: bool | str | os.PathLike | None,
    ignore_prefixes: tuple[str, ...] = (),
    **kwargs: Any,
) -> nn.Module:
    """Build torchvision's ``arch`` and load ``pretrained`` into it (see module docstring).

    ``ignore_prefixes`` name the classification layers we drop (``fc.``, ``classifier.``):
    they may be present or missing in a local file.
    """
    if pretrained is None or pretrained is False:
        return builder(weights=None, **kwargs)
    enum_cls = get_model_weights(arch)
    if pretrained is True or (isinstance(pretrained, str) and pretrained in enum_cls.__members__):
        weights = enum_cls.DEFAULT if pretrained is True else enum_cls[pretrained]
        target = hub_checkpoint_path(weights)
        try:
            return builder(weights=weights, progress=False, **kwargs)
        except Exception as err:  # URLError, HTTPError, OSError, hash mismatch, ...
            raise PretrainedWeightsError(
                f"Could not load torchvision weights {enum_cls.__name__}.{weights.name} for {arch}: "
                f"{err}.\nIf this machine is offline, download {weights.url} elsewhere and put the "
                f"file at {target} (or set TORCH_HOME), or pass a local file: "
                f"`pretrained: /path/to/{target.name}`."
            ) from err
    path = Path(os.fspath(pretrained)).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(
            f"pretrained={str(pretrained)!r} for {arch} is neither a weight name of "
            f"{enum_cls.__name__} ({', '.join(enum_cls.__members__)}) nor an existing file."
        )
    model = builder(weights=None, **kwargs)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PretrainedWeightsError(f"{path}: cannot be read as a PyTorch state dict: {err}") from err
    state = remap_legacy_densenet_keys(unwrap_state_dict(raw, str(path)))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise PretrainedWeightsError(f"{path} does not fit torchvision {arch}: {err}") from err
    missing = [k for k in missing if not k.startswith(ignore_prefixes)]
    unexpected = [k for k in unexpected if not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"{path} does not hold torchvision {arch} weights: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})."
        )
    return model
