"""``atrous fit``, ``atrous compare`` and ``atrous demo``: training."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import is_rank_zero, verbose_option, with_config


def add_fit(sub: argparse._SubParsersAction) -> None:
    fit = verbose_option(with_config(sub.add_parser("fit", help="train a model")))
    fit.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                     help="continue the run in train.output_dir from its last.ckpt (or from the given checkpoint)")
    fit.add_argument("--weights", metavar="NAME",
                     help="start from published weights (atrous weights lists them) with this config's classes: "
                          "the same as train.init_checkpoint=NAME")
    fit.add_argument("--overwrite", action="store_true",
                     help="start afresh in a train.output_dir that holds a previous run (its outputs are moved "
                          "aside into <output_dir>/replaced-<time>/)")
    fit.set_defaults(func=fit_command)


def fit_command(args: argparse.Namespace) -> int:
    from ..training.runner import BEST_RULES, fit, format_table

    experiment = args.experiment
    if args.weights:
        experiment = experiment.with_overrides([f"train.init_checkpoint={args.weights}"])
    metrics = fit(experiment, resume=args.resume or False, overwrite=args.overwrite)
    out = experiment.output_dir
    if not is_rank_zero():
        return 0
    print(format_table(metrics))
    if metrics["train_precision"]["reason"]:
        print(f"Trained in {metrics['train_precision']['precision']} (train.precision auto: "
              f"{metrics['train_precision']['reason']})")
    if metrics.get("best_checkpoint") == BEST_RULES[False]:
        print(f"No validation ran during training: {out}/checkpoints/best.ckpt holds the final weights")
    lists = f", train/val file lists in {out}/splits" if (out / "splits" / "val.txt").is_file() else ""
    print(f"Wrote {out}/metrics.json, checkpoints in {out}/checkpoints, logs in {out}/tb and {out}/csv{lists}")
    return 0


def add_compare(sub: argparse._SubParsersAction) -> None:
    cmp_ = verbose_option(sub.add_parser("compare", help="train several configs the same way and tabulate them"))
    cmp_.add_argument("configs", nargs="+", help="YAML config files")
    cmp_.add_argument("--output", required=True, help="folder for the runs and results.md")
    cmp_.add_argument("--classes", nargs="*", default=[], help="classes whose IoU gets a column")
    cmp_.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override values in every config")
    cmp_.add_argument("--seeds", nargs="*", type=int, default=[], help="train every config once per seed (train.seed)")
    cmp_.set_defaults(func=compare_command)


def compare_command(args: argparse.Namespace) -> int:
    from ..training.compare import compare, markdown_table

    # the command line's experiments carry --set already
    results = compare(args.experiments, Path(args.output), args.classes, (), args.seeds)
    if is_rank_zero():
        print(markdown_table(results, args.classes))
        print(f"Wrote {args.output}/results.md and results.json")
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    demo = verbose_option(sub.add_parser("demo", help="run the main job on the built-in data"))
    demo.add_argument("--output", default="runs/demo", help="output folder")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override demo config values")
    demo.set_defaults(func=demo_command)


def demo_command(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(Path(args.output), list(args.overrides))
