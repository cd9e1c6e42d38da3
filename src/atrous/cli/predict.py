"""``atrous predict``: segment images, folders and videos with a checkpoint."""

from __future__ import annotations

import argparse
import sys

from .options import (
    checkpoint_config_source,
    checkpoint_or_weights,
    engine_of,
    engine_options,
    strategy_of,
    test_time_options,
)


def add_predict(sub: argparse._SubParsersAction) -> None:
    pred = sub.add_parser("predict", help="segment images, folders and videos with a checkpoint")
    pred.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) and videos")
    checkpoint_or_weights(pred, required=True)
    pred.add_argument("--config", help="YAML config (default: the config the checkpoint stores)")
    pred.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    pred.add_argument("--output", required=True, help="output folder (outside the inputs)")
    test_time_options(pred, config_section=False)
    pred.add_argument("--probabilities", action="store_true", help="also write <name>_probs.npz (float16, C×H×W)")
    pred.add_argument("--cityscapes-submission", action="store_true",
                      help="write only Cityscapes label-id PNGs named for the benchmark")
    pred.add_argument("--overlay-video", action="store_true", help="for videos, also write <name>_overlay.mp4")
    pred.add_argument("--overwrite", action="store_true",
                      help="move output files that exist aside into <output>/replaced-<time>/ (default: refuse before "
                           "predicting; never an input)")
    pred.add_argument("--shard", metavar="K/N",
                      help="predict only shard K of N (every N-th input by name, from the K-th); implies --skip-existing")
    pred.add_argument("--skip-existing", action="store_true",
                      help="skip inputs whose outputs all exist; redo those with some (a stopped run resumes)")
    pred.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    pred.add_argument("--no-progress", action="store_true", help="no progress bar")
    engine_options(pred)
    pred.set_defaults(func=predict_command)


def predict_command(args: argparse.Namespace) -> int:
    from ..evaluation.predict_app import run_predict
    from ..evaluation.prediction_files import parse_shard

    shard = parse_shard(args.shard) if args.shard else None
    config, extra = checkpoint_config_source(args)
    result = run_predict(
        checkpoint=args.checkpoint, inputs=args.inputs, output=args.output, config=config,
        overrides=extra, strategy=strategy_of(args, where="predict's test-time options"), probabilities=args.probabilities,
        cityscapes_submission=args.cityscapes_submission, overlay_video=args.overlay_video,
        overwrite=args.overwrite, max_pixels=args.max_pixels, device=args.device, engine=engine_of(args),
        progress=not args.no_progress, shard=shard, skip_existing=args.skip_existing or shard is not None,
    )
    done = f" ({len(result.complete)} input(s) skipped: their outputs were complete)" if result.complete else ""
    print(f"Wrote {len(result.written)} files to {args.output}{done}; the model ran in {result.engine}")
    if result.incomplete:
        print(f"atrous predict: {len(result.incomplete)} video(s) ended early, their frames up to there were predicted:",
              file=sys.stderr)
        for path, how in result.incomplete:
            print(f"  {path}: {how}", file=sys.stderr)
    if result.failed:
        print(f"atrous predict: skipped {len(result.failed)} input(s), the others were predicted:", file=sys.stderr)
        for path, reason in result.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 1 if result.incomplete else 0
