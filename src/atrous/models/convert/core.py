"""What every source format shares: the error, reading a file, renaming by rules, matching.

A source format is a :class:`SourceFormat`: its renaming rules (data: a regex and its
replacement per rule, first match wins) for the model a config builds, and where its file is.
:func:`convert_state_dict` applies them: DataParallel's ``module.`` prefix dropped, every key
renamed, then :func:`match_state_dict` checks that every key of the file is used and every
weight of the model filled.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import UserError
from ..backbones.weights import PretrainedWeightsError, strip_module_prefix, unwrap_state_dict
from ..build import build_model
from ..segmentor import Segmentor

StateDict = dict[str, torch.Tensor]
# A renaming rule: the pattern a source key must match (``re.match``) and its replacement
# (``re.sub`` syntax, or a function of the match), applied once at the match.
Rule = tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]]


class ConversionError(UserError, ValueError):
    """A file cannot be converted: unreadable, or its weights do not fit the config's model."""


@dataclass(frozen=True)
class SourceFormat:
    """One published checkpoint format (``atrous convert --from NAME``)."""

    name: str
    # The renaming rules onto a model's state-dict keys (some depend on the model: rates).
    rules: Callable[[Segmentor], Sequence[Rule]]
    # The file to convert: the given one, or a default (downloaded if the format can);
    # a missing file raises ConversionError saying where to get it.
    locate: Callable[[str | os.PathLike | None, Mapping[str, Any]], Path]


def target_model(config: Mapping[str, Any]) -> Segmentor:
    """The model a config (full or its ``model`` section) builds, without pretrained downloads."""
    return build_model(config, pretrained_backbone=False)


def rename(keys: Sequence[str], rules: Sequence[Rule]) -> dict[str, str | None]:
    """Each key → its new name by the first rule that matches it (``None``: no rule does)."""
    return {key: next((pattern.sub(to, key, count=1) for pattern, to in rules if pattern.match(key)), None) for key in keys}


def convert_state_dict(
    source: SourceFormat, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any] | Segmentor
) -> StateDict:
    """A state dict of ``source`` → the state dict of ``build_model(config)``.

    ``config``: a full config, its ``model`` section, or the model already built from it.
    Raises :class:`ConversionError` when the file's keys and the model's weights do not match.
    """
    model = config if isinstance(config, Segmentor) else target_model(config)
    state = strip_module_prefix(state_dict)
    return match_state_dict(state, rename(list(state), source.rules(model)), model)


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
    """Tensors of a checkpoint file (``weights_only``; PyTorch 0.3 legacy files included), with
    DataParallel's ``module.`` prefix dropped."""
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
