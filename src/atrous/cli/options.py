"""Options and helpers several commands share, each defined once: ``--config`` with overrides,
``--checkpoint``/``--weights``, and the test-time strategy of validate, test and predict
(:mod:`atrous.evaluation.strategy`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError
from ..engines.choices import ENGINES, MEMORY_FORMATS, PRECISIONS
from ..evaluation.choices import MAX_INPUT_PIXELS, TTA_PRESETS

if TYPE_CHECKING:
    from ..engines.base import EngineOptions
    from ..evaluation.strategy import EvaluationStrategy
    from ..training.experiment import Experiment

PRESETS = ", ".join(TTA_PRESETS)


def with_config(p: argparse.ArgumentParser, required: bool = True) -> argparse.ArgumentParser:
    """``--config``, and overrides of its values as trailing ``KEY=VALUE`` items or ``--set``."""
    stored = "" if required else " (default: the config the --checkpoint stores)"
    p.add_argument("--config", required=required, help="YAML config file" + stored)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config values")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    return p


def checkpoint_or_weights(p: argparse.ArgumentParser, required: bool,
                          checkpoint_help: str = "atrous checkpoint (.ckpt)") -> None:
    """``--checkpoint`` or ``--weights NAME`` (published weights; :func:`atrous.cli.main` resolves them)."""
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--checkpoint", help=checkpoint_help)
    group.add_argument("--weights", metavar="NAME",
                       help="published weights by name instead (atrous weights lists them; downloaded once)")


def test_time_options(p: argparse.ArgumentParser, *, config_section: bool) -> None:
    """The test-time strategy: ``--tta``, ``--scales``, ``--flip``, ``--window``, ``--overlap``,
    ``--output-stride``, ``--max-pixels`` (read back by :func:`strategy_of`). Every default is ``None``, "not given".

    ``config_section``: validate and test, whose options override the config's ``evaluate:``
    section (``--tta`` is checked with it, ``--no-flip`` turns a preset's flips off); predict has
    no such section (``--tta`` is one of the presets, ``--flip`` only adds flips).
    """
    if config_section:
        p.add_argument("--tta", help=f"test-time preset: {PRESETS} (--scales/--flip override it)")
    else:
        p.add_argument("--tta", choices=list(TTA_PRESETS), help="test-time strategy preset; --scales and --flip override it")
    p.add_argument("--scales", nargs="+", type=float, metavar="S", help="input scales, e.g. 0.5 0.75 1 1.25 1.5 1.75")
    if config_section:
        p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                       help="also predict left-right flipped inputs (--no-flip: not, whatever the preset)")
    else:
        p.add_argument("--flip", action="store_true", default=None, help="also predict left-right flipped inputs")
    p.add_argument("--window", nargs=2, type=int, metavar=("H", "W"), help="sliding-window size (the training crop)")
    p.add_argument("--overlap", type=float, help="overlap of neighbouring windows (default 1/3)")
    p.add_argument("--output-stride", type=int, help="evaluate at this output stride (e.g. 8 for a model trained at 16)")
    limit = "" if config_section else "skip images of more pixels (default: Pillow's limit, 89478485), and "
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help=f"{limit}refuse a --window, or a --scales that enlarges an image, of more than N pixels "
                        f"(default: {MAX_INPUT_PIXELS}, 4096x8192); 0: no limit")


def strategy_of(args: argparse.Namespace, experiment: Experiment | None = None, where: str | None = None,
                **extra: Any) -> EvaluationStrategy:
    """The strategy the :func:`test_time_options` (and ``extra`` options, e.g. ``labels``) give,
    on top of an experiment's ``evaluate:`` section (``None``: the defaults); ``where`` names
    them in errors. Without any option given: the experiment's own, as parsed."""
    from ..evaluation.strategy import strategy_from_options

    keys = ("tta", "scales", "flip", "window", "overlap", "output_stride", "max_pixels")
    options = {**{key: getattr(args, key) for key in keys}, **extra}
    if experiment is not None and all(value is None for value in options.values()):
        return experiment.evaluate
    section = experiment.section("evaluate") if experiment is not None else None
    return strategy_from_options(section, options, where)


def engine_options(p: argparse.ArgumentParser, precision: str = "auto") -> None:
    """What runs the model: ``--engine``, ``--precision``, ``--compile``, ``--memory-format``,
    ``--quantized``, ``--engine-cache``/``--no-engine-cache`` (read back by :func:`engine_of`).

    ``precision``: the default; ``auto`` for the commands that deploy a model (predict, serve),
    ``fp32`` for the ones that score it (validate, test: a score that does not depend on the CPU)."""
    g = p.add_argument_group("engine (docs/engines.md)")
    g.add_argument("--engine", choices=list(ENGINES), default="torch",
                   help="what runs the model (default: torch; onnxruntime/openvino export once and cache)")
    g.add_argument("--precision", choices=list(PRECISIONS), default=precision,
                   help=f"default {precision}; auto: bf16 where the CPU (AMX, AVX512-BF16) or GPU computes it, "
                        "else fp32; bf16/fp16 (torch autocast, OpenVINO); int8 with --quantized")
    g.add_argument("--compile", action="store_true", help="torch.compile the model (--engine torch)")
    g.add_argument("--memory-format", choices=list(MEMORY_FORMATS), default="auto",
                   help="torch engine layout (default auto: channels_last on CPU, NCHW on CUDA)")
    g.add_argument("--quantized", metavar="DIR", help="the int8 model atrous quantize wrote (with --precision int8)")
    g.add_argument("--engine-cache", metavar="DIR", help="where exported engines are kept (default ~/.cache/atrous/engines)")
    g.add_argument("--no-engine-cache", action="store_true", help="build the engine afresh, keep nothing")


def engine_of(args: argparse.Namespace) -> EngineOptions:
    """The :class:`~atrous.engines.EngineOptions` of :func:`engine_options`."""
    from ..engines.base import EngineOptions

    return EngineOptions(
        engine=args.engine, precision=args.precision, compile=args.compile, memory_format=args.memory_format,
        quantized=Path(args.quantized) if args.quantized else None,
        cache_dir=Path(args.engine_cache) if args.engine_cache else None, use_cache=not args.no_engine_cache,
    )


def overrides(args: argparse.Namespace) -> list[str]:
    """The trailing ``KEY=VALUE`` items and ``--set``'s, in that order (a command may have either)."""
    return list(getattr(args, "overrides", None) or []) + list(getattr(args, "set", None) or [])


def checkpoint_config_source(args: argparse.Namespace) -> tuple[dict | None, list[str]]:
    """What a command with ``--checkpoint`` hands :func:`~atrous.models.checkpoint.checkpoint_config`:
    the ``--config``'s config (parsed once at the command line's boundary, overrides applied)
    and nothing more to apply, or ``None`` (the checkpoint's stored config) and the overrides."""
    if args.config:
        return args.experiment.mapping(), []
    return None, overrides(args)


def command_config(args: argparse.Namespace) -> dict:
    """The config of a command with ``--config`` or ``--checkpoint``: the ``--config``'s, else
    the one the checkpoint stores (``atrous fit`` and ``atrous convert`` write it), overridden."""
    from ..models.checkpoint import checkpoint_config, read_checkpoint

    if args.config:
        return args.experiment.mapping()
    if not args.checkpoint:
        raise ConfigError("pass --config, or a --checkpoint that stores its config")
    return checkpoint_config(read_checkpoint(args.checkpoint), args.checkpoint, None, overrides(args))


def config_file(config: str | None) -> str | None:
    """The file a ``--config`` names, when it is a path rather than a packaged name."""
    return config if config and Path(config).is_file() else None


def is_rank_zero() -> bool:
    """Under DDP every process runs the command; only rank 0 reports and writes."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def verbose_option(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--verbose``: show Lightning's own lines and warnings too (hidden by default: cli/quiet.py)."""
    p.add_argument("--verbose", action="store_true",
                   help="also show Lightning's tips, info lines and the warnings atrous makes moot")
    return p
