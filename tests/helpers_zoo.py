"""Every config shipped with atrous (configs/**/*.yaml), the test ids that name them, and the
zoo grouped by network structure (backbone, head, output stride)."""

from __future__ import annotations

import pytest

from atrous.config import config_name, list_configs, load_config

ZOO = list_configs()
ZOO_IDS = [config_name(p) for p in ZOO]


def _structure(path) -> tuple[str, str, int | None]:
    model = load_config(path)["model"]
    return model["backbone"]["name"], model["head"]["name"], model["backbone"].get("output_stride")


def _once_per_structure() -> list:
    """``ZOO`` as pytest params: the first config of each structure in the fast tier, the configs
    that repeat a structure (other widths, rates, class counts) in the ``slow`` tier."""
    seen: set[tuple[str, str, int | None]] = set()
    params = []
    for path, name in zip(ZOO, ZOO_IDS, strict=True):
        structure = _structure(path)
        params.append(pytest.param(path, id=name, marks=[pytest.mark.slow] if structure in seen else []))
        seen.add(structure)
    return params


ZOO_ONCE_PER_STRUCTURE = _once_per_structure()
