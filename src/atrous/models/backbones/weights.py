"""Load torchvision ImageNet weights into the networks our backbones wrap.

``pretrained`` accepts:

* ``False`` / ``None`` — random initialisation;
* ``True`` — torchvision's default weight enum for the architecture (``DEFAULT``);
* the name of an enum member, e.g. ``"IMAGENET1K_V2"``;
* a path to a local state dict (``.pth``) — torchvision's own files, or any checkpoint whose
  ``state_dict``/``model`` entry holds the classification network's keys.

Downloads go through torch.hub's cache (:func:`hub_file`, also for ``atrous convert``). Offline,
a missing file raises :class:`PretrainedWeightsError` that names the URL and the exact path to
place the file at.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import WeightsEnum, get_model_weights

from ...errors import UserError


class PretrainedWeightsError(UserError, RuntimeError):
    """Pretrained weights could not be found, downloaded or loaded."""


# torchvision's DenseNet files use the pre-2018 key names "norm.1", "conv.2", ...
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def legacy_densenet_key(key: str) -> str:
    """``features.denseblock1.denselayer1.norm.1.weight`` → ``...denselayer1.norm1.weight``."""
    m = _DENSENET_OLD_KEY.match(key)
    return m.group(1) + m.group(2) if m else key


def remap_legacy_densenet_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply :func:`legacy_densenet_key` to every key of a state dict."""
    return {legacy_densenet_key(key): value for key, value in state_dict.items()}


def unwrap_state_dict(obj: Any, source: str) -> dict[str, torch.Tensor]:
    """Find the tensor mapping in a loaded checkpoint and strip DataParallel's ``module.``."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise PretrainedWeightsError(f"{source}: not a state dict (a mapping of names to tensors).")
    return strip_module_prefix(obj)


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop ``nn.DataParallel``'s ``module.`` prefix from the keys (the one place this rule lives)."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def hub_checkpoint_path(weights: WeightsEnum) -> Path:
    """Where torch.hub looks for (and downloads) a torchvision weight file."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def hub_file(weights: WeightsEnum, *, instead: str, purpose: str = "") -> Path:
    """torchvision's file of ``weights`` in torch.hub's cache, downloaded there (hash-checked,
    written under a temporary name first) if missing.

    Offline, :class:`PretrainedWeightsError` names the URL, the exact path to place the file at
    and ``instead``, how to pass a local file (e.g. ``"pass a local file: ..."``); ``purpose``
    follows the weights' name in it (``" for resnet18"``).
    """
    target = hub_checkpoint_path(weights)
    if target.is_file():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = torch.hub.HASH_REGEX.search(target.name)
        # torch.hub may announce downloads on stdout; keep stdout clean for --json output.
        with contextlib.redirect_stdout(sys.stderr):
            torch.hub.download_url_to_file(weights.url, str(target), digest.group(1) if digest else None, progress=False)
    except Exception as err:  # URLError, HTTPError, OSError, hash mismatch
        raise PretrainedWeightsError(
            f"Could not download torchvision weights {type(weights).__name__}.{weights.name}{purpose}: {err}.\n"
            f"If this machine is offline, download {weights.url} elsewhere and put the file at "
            f"{target} (or set TORCH_HOME), or {instead}."
        ) from err
    return target


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
        name = os.path.basename(weights.url)
        target = hub_file(weights, instead=f"pass a local file: `pretrained: /path/to/{name}`", purpose=f" for {arch}")
        try:
            raw = torch.load(target, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated, not a torch file, or pickled code (refused, never run)
            raise PretrainedWeightsError(
                f"The cached torchvision weights {target} ({enum_cls.__name__}.{weights.name} for {arch}) cannot be "
                f"loaded: {err}. Delete the file (it is re-downloaded) or replace it with a good copy of {weights.url}."
            ) from err
        return _load_into(builder(weights=None, **kwargs), raw, str(target), arch, ignore_prefixes)
    path = Path(os.fspath(pretrained)).expanduser()
    if not path.is_file():
        raise PretrainedWeightsError(
            f"pretrained={str(pretrained)!r} for {arch} is neither a weight name of "
            f"{enum_cls.__name__} ({', '.join(enum_cls.__members__)}) nor an existing file."
        )
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PretrainedWeightsError(f"{path}: cannot be read as a PyTorch state dict: {err}") from err
    return _load_into(builder(weights=None, **kwargs), raw, str(path), arch, ignore_prefixes)


def _load_into(
    model: nn.Module, raw: Any, source: str, arch: str, ignore_prefixes: tuple[str, ...]
) -> nn.Module:
    """Load a checkpoint's tensors into torchvision's ``arch``, ignoring its classifier keys."""
    state = remap_legacy_densenet_keys(unwrap_state_dict(raw, source))
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise PretrainedWeightsError(f"{source} does not fit torchvision {arch}: {err}") from err
    missing = [k for k in missing if not k.startswith(ignore_prefixes)]
    unexpected = [k for k in unexpected if not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"{source} does not hold torchvision {arch} weights: "
            f"{len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})."
        )
    return model
