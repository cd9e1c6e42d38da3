"""``atrous quantize``: int8 post-training quantization with calibration on real images."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..engines.choices import QUANTIZE_ENGINES
from ..errors import InputError
from .options import checkpoint_config_source, checkpoint_or_weights, config_file, with_config


def add_quantize(sub: argparse._SubParsersAction) -> None:
    q = with_config(sub.add_parser("quantize", help="int8 post-training quantization (OpenVINO/NNCF or onnxruntime) "
                                                    "with calibration, and its accuracy/latency report"), required=False)
    checkpoint_or_weights(q, required=True)
    q.add_argument("--engine", choices=list(QUANTIZE_ENGINES), default="openvino",
                   help="the engine to quantize for (default: openvino)")
    q.add_argument("--calibration", default="train", choices=["train", "val", "test"],
                   help="split whose images calibrate the quantizer (default: train; evaluation transforms)")
    q.add_argument("--num-images", type=int, default=128, help="calibration images (a seeded random subset; default 128)")
    q.add_argument("--output", required=True, help="folder to write (the quantized model, quantization.json, report.json)")
    q.add_argument("--no-evaluate", action="store_true", help="skip the val-split mIoU and agreement (latency only)")
    q.add_argument("--repeats", type=int, default=10, help="timed runs per engine for the latency (default 10)")
    q.add_argument("--engine-cache", metavar="DIR", help="where exported engines are kept (default ~/.cache/atrous/engines)")
    q.add_argument("--overwrite", action="store_true", help="replace --output if it exists")
    q.set_defaults(func=quantize_command)


def quantize_command(args: argparse.Namespace) -> int:
    from ..deploy.int8_report import format_quantize_report, run_quantize

    if args.repeats < 1 or args.num_images < 1:
        raise InputError(f"--repeats and --num-images must be at least 1, got {args.repeats} and {args.num_images}")
    config, extra = checkpoint_config_source(args)
    report = run_quantize(
        checkpoint=args.checkpoint, output=args.output, engine=args.engine, calibration=args.calibration,
        num_images=args.num_images, config=config, config_file=config_file(args.config),
        overrides=extra, overwrite=args.overwrite,
        evaluate=not args.no_evaluate, repeats=args.repeats,
        cache_dir=Path(args.engine_cache) if args.engine_cache else None,
    )
    print(format_quantize_report(report))
    return 0
