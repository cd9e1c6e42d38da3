"""The ``atrous`` command line: fit, validate, test, info, zoo, weights, convert, predict,
evaluate-cityscapes, analyze, export, quantize, benchmark, benchmark-data, check-data, demo.

Every command that reads a config takes overrides of any config value, either as trailing
``key.path=value`` items or with ``--set``: ``atrous fit --config C train.max_epochs=2``. The
config, overrides applied, is validated section by section before the command runs.

Errors: a mistake the user can fix (:class:`atrous.errors.UserError`, a full disk) prints one
line, ``atrous: error: …``, and exits with status 2; Ctrl-C exits with 130; anything else is a
bug in atrous: its traceback is printed, with a request to report it, and the status is 1.

Quiet by default: Lightning's tips and the warnings atrous makes moot are hidden
(:mod:`.quiet`); ``--verbose`` on the training and evaluation commands shows them.
"""

from __future__ import annotations

import os
import sys

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
from .quiet import lightning_output

__all__ = ["EXIT_INTERNAL_ERROR", "EXIT_INTERRUPTED", "EXIT_USER_ERROR", "INTERNAL_ERROR_LINE", "check_config",
           "main", "report_error"]


def main(argv: list[str] | None = None) -> int:
    """Run one ``atrous`` command; returns its exit status (see the module docstring)."""
    tolerate_output_encoding()
    args = build_parser().parse_args(argv)
    try:
        check_arguments(args)
        if getattr(args, "weights", None):  # --weights NAME: the converted checkpoint, then as --checkpoint
            from ..models.pretrained import resolve_checkpoint

            args.checkpoint = str(resolve_checkpoint(args.weights, progress=not getattr(args, "no_progress", False)))
        if hasattr(args, "verbose"):  # a command that runs a Lightning Trainer
            with lightning_output(verbose=args.verbose):
                status = args.func(args)
        else:
            status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the boundary, not at interpreter exit
        return status
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `atrous zoo | head -1`: the reader left; so do we, quietly
        silence_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as err:  # the one error boundary: see report_error
        return report_error(err)


EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader closed the pipe


def tolerate_output_encoding() -> None:
    """Print what the terminal's encoding cannot show (×, ≥, —; ``PYTHONIOENCODING=ascii``) as
    escapes rather than failing on it."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit raises no second BrokenPipeError."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
