"""The ``atrous`` command line: fit, validate, test, info, zoo, weights, convert, predict,
evaluate-cityscapes, analyze, export, quantize, benchmark, benchmark-data, check-data, demo.

Every command that reads a config takes overrides of any config value, either as trailing
``key.path=value`` items or with ``--set``: ``atrous fit --config C train.max_epochs=2``. The
config, overrides applied, is validated section by section before the command runs.

Errors: a mistake the user can fix (:class:`atrous.errors.UserError`, a full disk) prints one
line, ``atrous: error: …``, and exits with status 2; Ctrl-C exits with 130; anything else is a
bug in atrous: its traceback is printed, with a request to report it, and the status is 1.
"""

from __future__ import annotations

from .boundary import (
    EXIT_INTERNAL_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    INTERNAL_ERROR_LINE,
    check_arguments,
    check_config,
    report_error,
)
from .parser import build_parser

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "INTERNAL_ERROR_LINE", "check_config",
           "main", "report_error"]


def main(argv: list[str] | None = None) -> int:
    """Run one ``atrous`` command; returns its exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        if getattr(args, "weights", None):  # --weights NAME: the converted checkpoint, then as --checkpoint
            from ..models.pretrained import resolve_checkpoint

            args.checkpoint = str(resolve_checkpoint(args.weights, progress=not getattr(args, "no_progress", False)))
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as err:  # the one error boundary: see report_error
        return report_error(err)
