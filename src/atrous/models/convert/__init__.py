"""Convert published checkpoints into atrous checkpoints (``atrous convert``).

Two source formats, one module each, whose renaming rules are data (see their docstrings):

* ``denseaspp-official`` (:mod:`.denseaspp_official`): the official DenseASPP Cityscapes models;
* ``torchvision-deeplabv3`` (:mod:`.torchvision_deeplabv3`): torchvision's DeepLabV3 models.

Each is a plain state dict renamed onto the :class:`~atrous.models.Segmentor` that a config
builds; every key of the file must be used and every weight of the model filled
(:mod:`.core`). A file that fits no rule gets a hint of what it seems to be (:mod:`.sniff`).
The checkpoint is written by :func:`atrous.models.checkpoint.write_checkpoint`, as ``atrous fit``
writes its own.

Files are read with ``torch.load(weights_only=True)``: PyTorch 0.3's legacy (non-zip) format
loads too (its tensors are rebuilt by ``torch._utils._rebuild_tensor``, which is allow-listed).
BatchNorm batch counters, absent from PyTorch 0.3 files, start at zero.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ...config import ConfigError, apply_overrides, load_config
from ...io import check_output
from ..checkpoint import label_space, write_checkpoint
from ..choices import CONVERT_FORMATS
from ..segmentor import Segmentor
from . import denseaspp_official, torchvision_deeplabv3
from .core import (
    ConversionError,
    SourceFormat,
    StateDict,
    match_state_dict,
    read_state_dict,
    target_model,
)
from .denseaspp_official import convert_denseaspp_official
from .sniff import describe_state_dict
from .torchvision_deeplabv3 import convert_torchvision_deeplabv3, torchvision_weights

SOURCE_FORMATS: dict[str, SourceFormat] = {
    source.name: source for source in (denseaspp_official.FORMAT, torchvision_deeplabv3.FORMAT)
}
FORMATS = CONVERT_FORMATS  # the names the command line offers; a test checks them against SOURCE_FORMATS
CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor], Mapping[str, Any] | Segmentor], StateDict]] = {
    "denseaspp-official": convert_denseaspp_official,
    "torchvision-deeplabv3": convert_torchvision_deeplabv3,
}

__all__ = [
    "CONVERTERS",
    "FORMATS",
    "SOURCE_FORMATS",
    "ConversionError",
    "convert_checkpoint",
    "convert_denseaspp_official",
    "convert_torchvision_deeplabv3",
    "describe_state_dict",
    "label_space",
    "locate_file",
    "match_state_dict",
    "read_state_dict",
    "target_model",
    "torchvision_weights",
]


def locate_file(source_format: str, file: str | os.PathLike | None, config: Mapping[str, Any]) -> Path:
    """The file to convert (see each format's ``locate``); a missing file raises an error that
    says where to get it."""
    return SOURCE_FORMATS[source_format].locate(file, config)


def convert_checkpoint(
    source_format: str,
    file: str | os.PathLike | None,
    config: str | os.PathLike | Mapping[str, Any],
    output: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    config_file: str | os.PathLike | None = None,
    overwrite: bool = False,
    keep_replaced: bool = True,
) -> dict[str, Any]:
    """Convert ``file`` (format ``source_format``) for the model of ``config`` and write an atrous
    checkpoint at ``output`` atomically, readable by ``atrous validate|test --checkpoint`` and
    :func:`atrous.models.checkpoint.load_segmentor`.

    ``config`` is a config file, a packaged name or a loaded config; ``overrides`` apply to it.
    ``config_file`` is the file a loaded config was read from: named in errors, never overwritten.

    The checkpoint holds ``state_dict`` (keys ``model.…``) and ``hyper_parameters`` (``config``
    as given, ``class_names``, ``ignore_index``), as ``atrous fit`` writes, and
    ``converted_from``. Returns a summary: ``output``, ``file``, ``tensors``, ``params``.

    Raises:
        OutputExistsError: ``output`` is the source weights or the config (always), or exists
            and ``overwrite`` is false; checked before anything is read. With ``overwrite`` an
            existing ``output`` is moved aside into ``replaced-<time>/`` once the new checkpoint
            is written (``keep_replaced=False``: replaced, for a cache atrous keeps itself).
    """
    if source_format not in CONVERTERS:
        raise ConversionError(f"unknown source format {source_format!r}; choose from {list(FORMATS)}")
    if not isinstance(config, Mapping):
        config_file = config_file or config
    check_output(output, inputs=[file, config_file], overwrite=overwrite)
    config = apply_overrides(config, overrides) if isinstance(config, Mapping) else load_config(config, overrides)
    where = config_file or "the config"
    try:  # a config error shows before a large file is read
        model = target_model(config)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from err
    path = locate_file(source_format, file, config)
    check_output(output, inputs=[path], overwrite=overwrite)  # e.g. the torch.hub cache's file
    raw = read_state_dict(path)
    try:
        state = CONVERTERS[source_format](raw, model)
    except ConversionError as err:
        hint = describe_state_dict(raw)
        raise ConversionError(
            f"{path} does not fit the model of {where} as --from {source_format}: {err}."
            + (f" {hint}" if hint else "")
        ) from err
    model.load_state_dict(state)
    written = write_checkpoint(
        output, model, config, extra={"converted_from": {"format": source_format, "file": str(path)}}, overwrite=overwrite,
        keep_replaced=keep_replaced,
    )
    return {
        "output": str(written),
        "file": str(path),
        "tensors": len(raw),
        "params": sum(p.numel() for p in model.parameters()),
    }
