"""Shared fixtures: a deterministic torch seed per test, the repository root, one torch thread.

Under pytest-xdist (``make test`` runs ``-n 2``: one worker per core) each worker and the atrous
processes its tests start use one thread, so that two workers do not oversubscribe the cores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"  # inherited by the processes the tests start
    torch.set_num_threads(1)


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
