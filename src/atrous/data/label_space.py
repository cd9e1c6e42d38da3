"""The label space a config names, without reading its dataset: one rule for every command.

``atrous convert`` stores it in the checkpoints it writes (as ``atrous fit`` stores the
dataset's), ``predict`` colours and names its outputs by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .base import ClassInfo, DatasetError
from .build import dataset_class
from .cityscapes import CLASSES as CITYSCAPES_CLASSES
from .folder import find_classes_file, read_classes_file


def config_classes(config: Mapping[str, Any]) -> ClassInfo | None:
    """The classes of a config's ``data.dataset`` (the synthetic streets when it has none).

    Cityscapes by its ``variant`` (19 or 20 classes); a folder dataset from its classes file
    when that is where the config says (read on this machine); every other dataset from its
    class. ``None`` when the config does not tell (an unknown name or variant, no classes file).
    """
    dataset = (config.get("data") or {}).get("dataset") or {"name": "synthetic"}
    name = dataset.get("name", "synthetic")
    if name == "cityscapes":
        return CITYSCAPES_CLASSES.get(str(dataset.get("variant", "19")))
    if name == "folder":
        try:
            return read_classes_file(find_classes_file(Path(dataset.get("root", ".")), dataset.get("classes_file"))).classes
        except DatasetError:  # no classes file there, or a bad one
            return None
    try:
        info = getattr(dataset_class(name), "classes", None)
    except ConfigError:
        return None
    return info if isinstance(info, ClassInfo) else None
