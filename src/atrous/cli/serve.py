"""``atrous serve``: a checkpoint behind an HTTP API and a web page (docs/serving.md)."""

from __future__ import annotations

import argparse
import socket
import sys
from typing import TYPE_CHECKING

from .options import checkpoint_config_source, checkpoint_or_weights, engine_of, engine_options

if TYPE_CHECKING:
    from ..serve.limits import Limits


def add_serve(sub: argparse._SubParsersAction) -> None:
    from ..serve.limits import Limits

    serve = sub.add_parser("serve", help="serve a checkpoint: HTTP API, web page, micro-batching (needs atrous[serve])")
    checkpoint_or_weights(serve, required=True)
    serve.add_argument("--config", help="YAML config (default: the config the checkpoint stores)")
    serve.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    limits = serve.add_argument_group("limits and batching")
    defaults = Limits()
    limits.add_argument("--max-bytes", type=int, default=defaults.max_bytes, help="largest request body (413 beyond)")
    limits.add_argument("--max-pixels", type=int, default=defaults.max_pixels, help="largest image, width × height (413 beyond)")
    limits.add_argument("--max-batch", type=int, default=defaults.max_batch, help="images of one size in one model call")
    limits.add_argument("--max-wait-ms", type=float, default=defaults.max_wait * 1000,
                        help="how long a request waits for others of its size")
    limits.add_argument("--max-queue", type=int, default=defaults.max_queue, help="requests waiting (503 beyond)")
    engine_options(serve)
    serve.set_defaults(func=serve_command)


def limits_of(args: argparse.Namespace) -> Limits:
    """The :class:`~atrous.serve.limits.Limits` of ``--max-...``, each checked."""
    from ..errors import InputError
    from ..serve.limits import Limits

    for name in ("max_bytes", "max_pixels", "max_batch", "max_queue"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.max_wait_ms < 0:
        raise InputError(f"--max-wait-ms must be 0 or more, got {args.max_wait_ms}")
    return Limits(max_bytes=args.max_bytes, max_pixels=args.max_pixels, max_batch=args.max_batch,
                  max_wait=args.max_wait_ms / 1000, max_queue=args.max_queue)


def serve_command(args: argparse.Namespace) -> int:
    from ..serve.app import require_serve, serve
    from ..serve.service import load_segmenter

    require_serve()  # before loading the model
    limits = limits_of(args)
    check_port(args.host, args.port)
    config, extra = checkpoint_config_source(args)
    segmenter = load_segmenter(args.checkpoint, config=config, overrides=extra, engine=engine_of(args),
                               device=args.device)
    print(f"atrous serve: {segmenter.name} on http://{args.host}:{args.port}/ (API docs: /docs; Ctrl-C stops)",
          file=sys.stderr, flush=True)
    serve(segmenter, host=args.host, port=args.port, limits=limits)
    return 0


def check_port(host: str, port: int) -> None:
    """Refuse, before the model is loaded, an address this machine cannot listen on."""
    from ..errors import InputError

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as err:
        raise InputError(f"cannot listen on {host}:{port} ({err.strerror}); choose another --port or --host") from err


def add_benchmark_serve(sub: argparse._SubParsersAction) -> None:
    from ..deploy.choices import LoadSettings
    from .benchmark import json_output_options

    bench = sub.add_parser("benchmark-serve",
                           help="atrous serve under a bounded load on loopback: throughput, p50/p99, batching's gain")
    source = bench.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="atrous checkpoint (.ckpt)")
    source.add_argument("--weights", metavar="NAME", help="published weights by name")
    source.add_argument("--config", help="a config's model with random weights (speed does not depend on them)")
    bench.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    defaults = LoadSettings()
    bench.add_argument("--requests", type=int, default=defaults.requests, help="requests per concurrency level")
    bench.add_argument("--concurrency", nargs="+", type=int, default=list(defaults.concurrency), metavar="C",
                       help="concurrent clients, one level each (default 1 4 16)")
    bench.add_argument("--image-size", nargs=2, type=int, default=list(defaults.image_size), metavar=("H", "W"))
    bench.add_argument("--max-batch", type=int, default=defaults.max_batch, help="the micro-batched server's batch limit")
    bench.add_argument("--max-wait-ms", type=float, default=defaults.max_wait * 1000)
    bench.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    bench.add_argument("--threads", type=int, help="CPU threads of the model (default: torch's)")
    engine_options(bench)
    json_output_options(bench)
    bench.set_defaults(func=benchmark_serve_command)


def benchmark_serve_command(args: argparse.Namespace) -> int:
    import json

    import torch

    from ..deploy.serve_load import load_test, markdown_table, settings_of
    from ..errors import InputError
    from ..serve.app import require_serve
    from ..serve.service import load_segmenter, segmenter_of
    from .benchmark import check_report_output, write_report
    from .options import config_file

    require_serve()
    if args.requests < 1 or min(args.concurrency) < 1 or args.max_batch < 1 or min(args.image_size) < 1:
        raise InputError("--requests, --concurrency, --max-batch and --image-size must be at least 1")
    check_report_output(args, [config_file(args.config), args.checkpoint])
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.config:
        from ..models import build_model

        experiment = args.experiment
        torch.manual_seed(0)
        segmenter = segmenter_of(build_model(experiment.model, pretrained_backbone=False), experiment.mapping(),
                                 args.config,
                                 engine=engine_of(args), device=args.device)
    else:
        segmenter = load_segmenter(args.checkpoint, overrides=args.set, engine=engine_of(args), device=args.device)
    settings = settings_of(args.requests, args.concurrency, args.image_size, args.max_batch, args.max_wait_ms)
    report = load_test(segmenter, settings)
    report["threads"] = torch.get_num_threads()
    print(markdown_table(report))
    write_report(args, report)
    if not args.output:
        print(json.dumps({k: report[k] for k in ("batching_gain", "errors", "rss_growth_mb")}))
    return 1 if report["errors"] else 0
