"""Shared fixtures: a deterministic torch seed per test, the repository root, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


@pytest.fixture
def one_thread():
    """One torch thread: the test machine's 2 cores are shared, and OpenMP spin-waiting on busy
    cores makes multi-threaded timing runs erratic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
