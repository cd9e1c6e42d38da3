"""The command line's error boundary: what is checked before a command runs (its config,
overrides applied, and its ``--device``) and how an error leaves it (see :mod:`atrous.cli`)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, load_config
from ..errors import (
    UserError,
    disk_full_cause,
    disk_full_message,
    out_of_memory_message,
    worker_error_message,
)

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 2, 1, 130
INTERNAL_ERROR_LINE = "atrous: internal error — please report it with the traceback above"


# -- checks before a command runs ------------------------------------------------------------------

def check_config(cfg: Mapping[str, Any], where: str = "") -> None:
    """Validate a whole config, overrides applied (:func:`validate_config`), unless it is a
    packaged config as shipped: those are valid (tests/test_errors.py validates each one), and
    ``atrous info`` on one then starts without importing torch."""
    from ..models.figures import is_packaged_config

    if not is_packaged_config(cfg):
        validate_config(cfg, where)


def validate_config(cfg: Mapping[str, Any], where: str = "") -> None:
    """Validate each section of a config by the module that owns it (``model``:
    :mod:`atrous.models.build`, ``data``: :mod:`atrous.data.build`, ``train``:
    :mod:`atrous.training.train_section`). Raises :class:`ConfigError` naming the key and the value."""
    if "model" not in cfg:
        raise ConfigError(f"{where}the config has no 'model' section; start from a shipped one (`atrous zoo`)")
    from ..data.build import check_data_section
    from ..models.spec import ModelSpec
    from ..training.train_section import check_train_section

    try:
        ModelSpec.from_mapping(cfg["model"])
        check_data_section(cfg.get("data"))
        check_train_section(cfg.get("train"))
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from err


def check_arguments(args: argparse.Namespace) -> None:
    """What can be checked before a command starts: its config (every command with --config,
    overrides applied) and its --device."""
    overrides = list(getattr(args, "overrides", []) or []) + list(getattr(args, "set", []) or [])
    configs = [args.config] if isinstance(getattr(args, "config", None), str) else []
    configs += list(getattr(args, "configs", None) or [])  # atrous compare
    for config in configs:
        check_config(load_config(config, overrides), f"{config}: ")
    if isinstance(getattr(args, "device", None), str):
        from ..devices import resolve_device

        resolve_device(args.device)


# -- the error boundary -------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def report_error(err: BaseException) -> int:
    """Print ``err`` the way the command line does and return the exit status (see
    :mod:`atrous.cli`): user errors, a full disk and exhausted memory as one line (2), anything
    else with its traceback (1)."""
    message = worker_error_message(err)  # a user error raised in a DataLoader worker
    if message is None and isinstance(err, UserError):
        message = str(err)
    full = disk_full_cause(err)
    if message is None and full is not None:
        message = disk_full_message(full)
    if message is None:
        message = out_of_memory_message(err)
    if message is not None:
        print(f"atrous: error: {_one_line(message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    traceback.print_exception(err, file=sys.stderr)
    print(INTERNAL_ERROR_LINE, file=sys.stderr)
    return EXIT_INTERNAL_ERROR
