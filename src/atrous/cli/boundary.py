"""The command line's error boundary: what is checked before a command runs (its config,
overrides applied, and its ``--device``) and how an error leaves it (see :mod:`atrous.cli`)."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..errors import (
    UserError,
    disk_full_cause,
    disk_full_message,
    out_of_memory_message,
    worker_error_message,
)

if TYPE_CHECKING:
    from ..training.experiment import Experiment

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 2, 1, 130
INTERNAL_ERROR_LINE = "atrous: internal error — please report it with the traceback above"


# -- checks before a command runs ------------------------------------------------------------------

def load_experiment(config: str, overrides: list[str]) -> Experiment:
    """The experiment a ``--config`` names, overrides applied, every section parsed
    (:meth:`~atrous.training.experiment.Experiment.validate`) — unless it is a packaged config as
    shipped: those are valid (tests/test_errors.py validates each one), their sections are parsed
    when a command first uses them, and ``atrous info`` on one starts without importing torch."""
    from ..models.figures import is_packaged_config
    from ..training.experiment import Experiment

    experiment = Experiment.load(config, overrides)
    if not is_packaged_config(experiment.config):
        experiment.validate()
    return experiment


def check_config(cfg: Mapping[str, Any], where: str = "") -> None:
    """Validate a whole config, overrides applied (:func:`validate_config`), unless it is a
    packaged config as shipped (see :func:`load_experiment`)."""
    from ..models.figures import is_packaged_config

    if not is_packaged_config(cfg):
        validate_config(cfg, where)


def validate_config(cfg: Mapping[str, Any], where: str = "") -> None:
    """Parse each section of a config into its spec (``model``, ``data``, ``train``,
    ``evaluate``: :class:`~atrous.training.experiment.Experiment`). Raises :class:`ConfigError`
    naming the key and the value."""
    from ..training.experiment import Experiment

    try:
        Experiment.of(cfg).validate()
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from err


def check_arguments(args: argparse.Namespace) -> None:
    """What can be checked before a command starts: its config (every command with --config,
    overrides applied: ``args.experiment``; ``atrous compare``'s configs: ``args.experiments``)
    and its --device."""
    from .options import overrides as overrides_of

    overrides = overrides_of(args)
    if isinstance(getattr(args, "config", None), str):
        args.experiment = load_experiment(args.config, overrides)
    if getattr(args, "configs", None):  # atrous compare
        args.experiments = [load_experiment(config, overrides) for config in args.configs]
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
