"""Shared fixtures: every config of the zoo, small input sizes, deterministic seeds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from atrous.config import CONFIG_ROOT, list_configs

torch.set_num_threads(max(1, torch.get_num_threads()))

ZOO = list_configs()
ZOO_IDS = [p.relative_to(CONFIG_ROOT).as_posix() for p in ZOO]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def repo_root() -> Path:
    return CONFIG_ROOT.parent
