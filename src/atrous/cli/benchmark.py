"""``atrous benchmark`` and ``atrous benchmark-data``: speed and memory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..deploy.choices import DEFAULTS, PHASES, VARIANTS
from ..engines.choices import ENGINE_PRECISIONS
from .options import config_file, with_config


def add_benchmark(sub: argparse._SubParsersAction) -> None:
    bench = with_config(sub.add_parser("benchmark", help="latency, throughput, memory and TFLOP/s (inference and training)"),
                        required=False)
    bench.add_argument("--peak", action="store_true",
                       help="the machine's ceiling per precision (matmul, 3x3 and atrous convolutions); with --engines: "
                            "each row's fraction of it")
    bench.add_argument("--peers", action="store_true",
                       help="instead of --config: atrous vs torchvision DeepLabv3-ResNet-50 and vs a plain DenseASPP-121")
    bench.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    bench.add_argument("--image-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    bench.add_argument("--batch", type=int, default=1, help="inference batch size")
    bench.add_argument("--train-image-size", nargs=2, type=int, metavar=("H", "W"), help="training step size (default: --image-size)")
    bench.add_argument("--train-batch", type=int, help="training batch size (default: max(2, --batch))")
    bench.add_argument("--precision", default="fp32", choices=list(ENGINE_PRECISIONS["torch"]),
                       help="autocast precision")
    bench.add_argument("--channels-last", action="store_true")
    bench.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up absorbs compilation)")
    bench.add_argument("--fold-bn", action="store_true", help="fold BatchNorm for inference")
    bench.add_argument("--repeats", type=int, default=10, help="timed runs per phase")
    bench.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    bench.add_argument("--phases", nargs="+", default=list(PHASES), choices=list(PHASES))
    bench.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 is steadier on a busy machine)")
    bench.add_argument("--engines", nargs="*", metavar="ENGINE",
                       help="instead of the phases: inference under each engine variant side by side "
                            f"({', '.join(VARIANTS)}, or all; none given: {' '.join(DEFAULTS['cpu'])} on CPU); "
                            "the reference is atrous eager (with --peers, torchvision's eager DeepLabV3 for ResNet-50)")
    bench.add_argument("--engine-cache", metavar="DIR", help="where exported engines are kept (default ~/.cache/atrous/engines)")
    json_output_options(bench)
    bench.set_defaults(func=benchmark_command)


def json_output_options(p: argparse.ArgumentParser) -> None:
    """``--output`` (the results as JSON) and ``--overwrite``."""
    p.add_argument("--output", help="write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="move an existing --output aside into replaced-<time>/ (never an input)")


def write_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """Write ``report`` as JSON to ``--output``, if given (checked by :func:`check_report_output` first)."""
    from ..io import atomic_write

    if args.output:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(args.output, lambda tmp: tmp.write_text(text), overwrite=args.overwrite, keep_replaced=True)
        print(f"Wrote {args.output}")


def check_report_output(args: argparse.Namespace, inputs: list[str | None]) -> None:
    """Refuse an ``--output`` that is an input or exists (without ``--overwrite``), before minutes of measuring."""
    from ..io import check_output

    if args.output:
        check_output(args.output, inputs=inputs, overwrite=args.overwrite)


def benchmark_command(args: argparse.Namespace) -> int:
    from ..deploy import benchmark

    if args.peak and args.engines is None:
        return peak_command(args)
    if bool(args.config) == args.peers:
        raise ConfigError("give either --config CONFIG, --peers or --peak")
    check_report_output(args, [config_file(args.config)])
    settings = benchmark.BenchmarkSettings(
        device=args.device, image_size=tuple(args.image_size), batch=args.batch,
        train_image_size=tuple(args.train_image_size) if args.train_image_size else None,
        train_batch=args.train_batch, precision=args.precision, channels_last=args.channels_last,
        compile=args.compile, fold_bn=args.fold_bn, repeats=args.repeats, warmup=args.warmup,
        phases=tuple(args.phases), threads=args.threads,
    )
    if args.engines is not None:
        from ..deploy.engine_benchmark import benchmark_engines, format_engine_report

        report = benchmark_engines(settings, args.engines, experiment=args.experiment if args.config else None,
                                   peers=args.peers, cache_dir=Path(args.engine_cache) if args.engine_cache else None)
        if args.peak:  # each row's fraction of this machine's ceiling in its precision
            from ..deploy.engine_benchmark import fractions_of_peak
            from ..deploy.peak import peak_table
            from ..devices import resolve_device

            with benchmark.num_threads(args.threads):
                fractions_of_peak(report, peak_table(resolve_device(args.device), ("fp32", "bf16")))
        print(format_engine_report(report))
    elif args.peers:
        report = benchmark.benchmark_peers(settings)
    else:
        report = benchmark.benchmark_config(args.experiment, settings)
    if args.engines is None:
        print(benchmark.format_report(report))
    write_report(args, report)
    return 0


def peak_command(args: argparse.Namespace) -> int:
    """``atrous benchmark --peak``: :func:`atrous.deploy.peak.peak_table` on ``--device``."""
    import torch

    from ..deploy.peak import format_peak_table, peak_table
    from ..devices import resolve_device

    check_report_output(args, [])
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precisions = ("fp32", "bf16", "fp16") if device.type == "cuda" else ("fp32", "bf16")
    report = peak_table(device, precisions, repeats=max(1, min(args.repeats, 3)))
    print(format_peak_table(report))
    write_report(args, report)
    return 0


def add_benchmark_data(sub: argparse._SubParsersAction) -> None:
    bdata = sub.add_parser("benchmark-data", help="Cityscapes-sized samples decoded and augmented per second per worker")
    bdata.add_argument("--root", help="a Cityscapes root (default: synthetic 1024x2048 frames in a temporary folder)")
    bdata.add_argument("--frames", type=int, default=4, help="synthetic frames to write")
    bdata.add_argument("--repeats", type=int, default=2, help="passes over the frames")
    bdata.add_argument("--train-results", help="an `atrous benchmark --output` JSON: compare with its training images/s")
    json_output_options(bdata)
    bdata.set_defaults(func=benchmark_data_command)


def benchmark_data_command(args: argparse.Namespace) -> int:
    from ..deploy.data_benchmark import benchmark_data, format_data_report, train_images_per_s_from

    check_report_output(args, [args.train_results])
    train, source = train_images_per_s_from(args.train_results) if args.train_results else (None, None)
    report = benchmark_data(args.root, frames=args.frames, repeats=args.repeats, train_images_per_s=train)
    print(format_data_report(report, source))
    write_report(args, report)
    return 0
