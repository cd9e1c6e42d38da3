"""Every config shipped with atrous (configs/**/*.yaml), the test ids that name them, and the
zoo grouped by network structure (backbone family, head, output stride)."""

from __future__ import annotations

import pytest

from atrous.config import config_name, list_configs, load_config

ZOO = list_configs()
ZOO_IDS = [config_name(p) for p in ZOO]


def _structure(path) -> tuple[tuple[str, str, int | None], int]:
    """The structure (backbone family, head, output stride; ``resnet101`` is of the family
    ``resnet``: depths and widths of the same code) and the backbone's depth (0 if it has none)."""
    model = load_config(path)["model"]
    name = model["backbone"]["name"]
    family = name.rstrip("0123456789")
    depth = int(name[len(family):] or 0)
    return (family, model["head"]["name"], model["backbone"].get("output_stride")), depth


def _once_per_structure() -> list:
    """``ZOO`` as pytest params: the shallowest config of each structure in the fast tier, the
    configs that repeat a structure (other depths, widths, rates, class counts) in the ``slow`` tier."""
    structures = [_structure(path) for path in ZOO]
    fast = {}
    for index, (structure, depth) in enumerate(structures):
        if structure not in fast or depth < structures[fast[structure]][1]:
            fast[structure] = index
    chosen = set(fast.values())
    return [pytest.param(path, id=name, marks=[] if index in chosen else [pytest.mark.slow])
            for index, (path, name) in enumerate(zip(ZOO, ZOO_IDS, strict=True))]


ZOO_ONCE_PER_STRUCTURE = _once_per_structure()
