"""The ``atrous`` argument parser: every command in the order ``atrous --help`` lists them, each
registered by the module that handles it (its ``add_<command>`` next to its ``<command>_command``)."""

from __future__ import annotations

import argparse

from . import __doc__ as DESCRIPTION
from .benchmark import add_benchmark, add_benchmark_data
from .data import add_check_data
from .encoders import add_encoders
from .evaluate import add_evaluate_cityscapes, add_validate_and_test
from .models import add_convert, add_export, add_info, add_weights, add_zoo
from .predict import add_predict
from .quantize import add_quantize
from .serve import add_benchmark_serve, add_serve
from .train import add_compare, add_demo, add_fit


def add_analyze(sub: argparse._SubParsersAction) -> None:
    """``atrous analyze <name>``: the papers' figures (PNG) and numbers (JSON)."""
    from ..analysis.commands import add_parser

    add_parser(sub)


COMMANDS = (
    add_fit, add_validate_and_test, add_info, add_compare, add_zoo, add_encoders, add_weights, add_convert, add_predict,
    add_evaluate_cityscapes, add_analyze, add_export, add_quantize, add_serve, add_benchmark, add_benchmark_serve,
    add_benchmark_data, add_check_data, add_demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atrous", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser
