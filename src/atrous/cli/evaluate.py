"""``atrous validate``, ``atrous test`` and ``atrous evaluate-cityscapes``: scoring a model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.choices import LABELS
from .options import (
    checkpoint_or_weights,
    command_config,
    engine_of,
    engine_options,
    is_rank_zero,
    strategy_of,
    test_time_options,
    verbose_option,
    with_config,
)

STAGES = {"validate": "val", "test": "test"}  # command → split


def add_validate_and_test(sub: argparse._SubParsersAction) -> None:
    for name, stage in STAGES.items():
        ev = verbose_option(with_config(sub.add_parser(name, help=f"evaluate a checkpoint on the {stage} split"),
                                        required=False))
        checkpoint_or_weights(ev, required=False, checkpoint_help="checkpoint (default: the run's best.ckpt)")
        ev.add_argument("--output", help=f"folder for metrics.json (default: <output_dir>/{name} for the run's own "
                                         f"checkpoints, else {name}/ beside the checkpoint)")
        ev.add_argument("--overwrite", action="store_true",
                        help="move an earlier metrics.json (sweep.md/json) in --output aside into replaced-<time>/ "
                             "(default: refuse; in the default folder it is always moved aside)")
        test_time_options(ev, config_section=True)
        ev.add_argument("--labels", choices=list(LABELS),
                        help="score against the label maps as on disk (default) or resized with the images")
        ev.add_argument("--sweep", action="store_true",
                        help="DeepLabv3 Tables 4/6: output stride 16 and 8 x single scale, +MS, +MS+flip; "
                             "writes sweep.md/json")
        engine_options(ev, precision="fp32")
        ev.set_defaults(func=evaluate_command)


def default_output(run_dir: Path, checkpoint: Path, command: str) -> Path:
    """Where ``validate``/``test`` write without ``--output``: ``<run>/<command>`` for a checkpoint
    of the run folder its config names, else ``<command>/`` beside the checkpoint (a copied
    checkpoint stores the folder of the run it came from, which this command did not create)."""
    inside = checkpoint.resolve().is_relative_to(run_dir.resolve()) if checkpoint.exists() else True
    return run_dir / command if inside else checkpoint.parent / command


def evaluate_command(args: argparse.Namespace) -> int:
    from ..training.experiment import Experiment
    from ..training.runner import evaluate, format_table, write_metrics

    stage = STAGES[args.command]
    experiment = args.experiment if args.config else Experiment.of(command_config(args))
    out_dir = experiment.output_dir
    checkpoint = Path(args.checkpoint) if args.checkpoint else out_dir / "checkpoints" / "best.ckpt"
    strategy = strategy_of(args, experiment, labels=args.labels)
    output = Path(args.output) if args.output else default_output(out_dir, checkpoint, args.command)
    engine = engine_of(args)
    if is_rank_zero():
        from ..io import claim_outputs, output_folder

        output_folder(output, "--output", create=False)
        names = ("sweep.md", "sweep.json") if args.sweep else ("metrics.json",)
        # The default folder is the command's own: an earlier result there is moved aside without asking.
        aside = claim_outputs(output, names, overwrite=args.overwrite or not args.output)
        if aside is not None:
            print(f"Moved the earlier {', '.join(names)} from {output} to {aside}")
    if args.sweep:
        from ..training.sweep import run_sweep

        return run_sweep(experiment, checkpoint, stage=stage, strategy=strategy, output=output, report=is_rank_zero(),
                         engine=engine)
    metrics = evaluate(experiment, checkpoint, stage=stage, strategy=strategy, engine=engine)
    if not is_rank_zero():
        return 0
    write_metrics(output / "metrics.json", metrics)
    print(format_table(metrics))
    print(f"Wrote {output / 'metrics.json'}")
    return 0


def add_evaluate_cityscapes(sub: argparse._SubParsersAction) -> None:
    cs = sub.add_parser("evaluate-cityscapes",
                        help="score label-id PNGs with cityscapesScripts' own evaluator (IoU/iIoU, class/category)")
    cs.add_argument("results", help="folder of label-id PNGs (atrous predict --cityscapes-submission)")
    cs.add_argument("--gt", required=True, metavar="ROOT", help="Cityscapes root holding gtFine/<split>/<city>/")
    cs.add_argument("--split", default="val", choices=["train", "val", "test", "train_extra"],
                    help="gtFine split to score against (default: val)")
    cs.add_argument("--output", help="also write the scores as JSON to this file")
    cs.add_argument("--overwrite", action="store_true",
                    help="move an existing --output aside into replaced-<time>/ (default: refuse before scoring)")
    cs.set_defaults(func=evaluate_cityscapes_command)


def evaluate_cityscapes_command(args: argparse.Namespace) -> int:
    from ..evaluation.cityscapes_eval import (
        check_scores_output,
        evaluate_cityscapes,
        format_scores,
        write_scores,
    )

    if args.output:
        check_scores_output(args.output, overwrite=args.overwrite)
    scores = evaluate_cityscapes(args.results, args.gt, split=args.split)
    print(format_scores(scores))
    print(f"{scores['images']} images of gtFine/{args.split} scored by {scores['evaluator']}")
    if args.output:
        write_scores(args.output, scores, overwrite=args.overwrite)
        print(f"Wrote {args.output}")
    return 0
