"""The ``atrous`` command line: fit, validate, test, info, zoo, weights, convert, predict,
evaluate-cityscapes, analyze, export, benchmark, benchmark-data, check-data, demo.

Every command that reads a config takes overrides of any config value, either as trailing
``key.path=value`` items or with ``--set``: ``atrous fit --config C train.max_epochs=2``. The
config, overrides applied, is validated section by section before the command runs.

Errors: a mistake the user can fix (:class:`atrous.errors.UserError`, a full disk) prints one
line, ``atrous: error: …``, and exits with status 2; Ctrl-C exits with 130; anything else is a
bug in atrous: its traceback is printed, with a request to report it, and the status is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import ConfigError, config_name, list_configs, load_config
from .errors import InputError, UserError, disk_full_cause, disk_full_message, worker_error_message

EXIT_USER_ERROR, EXIT_INTERNAL_ERROR, EXIT_INTERRUPTED = 2, 1, 130
INTERNAL_ERROR_LINE = "atrous: internal error — please report it with the traceback above"


def _info(args: argparse.Namespace) -> int:
    from .models import build_model
    from .models.complexity import model_info

    cfg = load_config(args.config, _overrides(args))
    try:
        model = build_model(cfg, pretrained_backbone=False)  # the architecture is enough here
    except ConfigError as err:
        raise ConfigError(f"{args.config}: {err}") from err
    info = model_info(model, tuple(args.image_size))
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"config            {args.config}")
    print(f"parameters        {info['params_total']:,} total, {info['params_trainable']:,} trainable")
    print(f"output stride     {info['output_stride']}")
    rf = f"{info['receptive_field']} feature-map pixels"
    if info["global_context"]:
        rf += " (+ image-level pooling: global)"
    print(f"receptive field   {rf}")
    h, w = info["image_size"]
    print(f"cost at {h}x{w}  {info['gflops']:.1f} GFLOPs ({info['gmacs']:.1f} GMACs)")
    return 0


def _is_rank_zero() -> bool:
    """Under DDP every process runs the command; only rank 0 reports and writes."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _overrides(args: argparse.Namespace) -> list[str]:
    return list(args.overrides) + list(args.set)


def _output_dir(cfg: dict) -> Path:
    from .training.config import TrainConfig

    return Path(TrainConfig.from_mapping(cfg.get("train")).output_dir)


def _fit(args: argparse.Namespace) -> int:
    from .training.runner import fit, format_table

    cfg = load_config(args.config, _overrides(args))
    metrics = fit(cfg, resume=args.resume or False, overwrite=args.overwrite)
    out = _output_dir(cfg)
    if not _is_rank_zero():
        return 0
    print(format_table(metrics))
    print(f"Wrote {out}/metrics.json, checkpoints in {out}/checkpoints, logs in {out}/tb and {out}/csv")
    return 0


def _evaluate(args: argparse.Namespace, stage: str) -> int:
    from .training.runner import evaluate, format_table, write_metrics

    cfg = load_config(args.config, _overrides(args)) if args.config else _stored_config(args)
    out_dir = _output_dir(cfg)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out_dir / "checkpoints" / "best.ckpt"
    from .evaluation.strategy import strategy_from_options

    strategy = strategy_from_options(cfg.get("evaluate"), {
        "tta": args.tta, "scales": args.scales, "flip": args.flip, "window": args.window,
        "overlap": args.overlap, "output_stride": args.output_stride, "labels": args.labels,
    })
    output = Path(args.output) if args.output else out_dir / ("validate" if stage == "val" else "test")
    if args.sweep:
        from .training.sweep import run_sweep

        return run_sweep(cfg, checkpoint, stage=stage, strategy=strategy, output=output, report=_is_rank_zero())
    metrics = evaluate(cfg, checkpoint, stage=stage, strategy=strategy)
    if not _is_rank_zero():
        return 0
    write_metrics(output / "metrics.json", metrics)
    print(format_table(metrics))
    print(f"Wrote {output / 'metrics.json'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .training.compare import compare, markdown_table

    results = compare([Path(c) for c in args.configs], Path(args.output), args.classes, args.set, args.seeds)
    if _is_rank_zero():
        print(markdown_table(results, args.classes))
        print(f"Wrote {args.output}/results.md and results.json")
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from .models import build_model
    from .models.complexity import count_parameters

    rows = []
    for path in list_configs():
        cfg = load_config(path)
        model = build_model(cfg, pretrained_backbone=False)
        total, trainable = count_parameters(model)
        ref = cfg.get("reference", {}) or {}
        name = config_name(path)
        rows.append(
            (name, cfg["model"]["backbone"]["name"], cfg["model"]["head"]["name"], model.output_stride,
             model.head_receptive_field, total, trainable, ref.get("source", ""))
        )
    print("| config | backbone | head | OS | RF | params | trainable | reproduces |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for name, backbone, head, os_, rf, total, trainable, source in rows:
        print(f"| `{name}` | {backbone} | {head} | {os_} | {rf} | {total:,} | {trainable:,} | {source} |")
    return 0


def _weights(args: argparse.Namespace) -> int:
    from .models.pretrained import resolve_checkpoint, weights_table

    if args.name is None:
        print(weights_table())
        return 0
    path = resolve_checkpoint(args.name, progress=not args.no_progress)
    print(f"{args.name}: {path}")
    print(f"Use it with --weights {args.name} (or --checkpoint {path}), e.g. atrous predict --weights {args.name} IMAGE --output OUT")
    return 0


def _stored_config(args: argparse.Namespace) -> dict:
    """The config a checkpoint stores (``atrous fit`` and ``atrous convert`` write it), overridden."""
    from .models.checkpoint import checkpoint_config, read_checkpoint

    if not args.checkpoint:
        raise ConfigError("pass --config, or a --checkpoint that stores its config")
    return checkpoint_config(read_checkpoint(args.checkpoint), args.checkpoint, None, _overrides(args))


def _convert(args: argparse.Namespace) -> int:
    from .models.convert import convert_checkpoint

    done = convert_checkpoint(args.source_format, args.file, args.config, args.output, args.set, overwrite=args.overwrite)
    print(f"Converted {done['file']} ({done['tensors']} tensors, {done['params']:,} parameters)")
    print(f"Wrote {done['output']}: atrous validate --checkpoint {done['output']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .evaluation.inference import TTA_PRESETS
    from .evaluation.prediction import run_predict

    tta = dict(TTA_PRESETS[args.tta])
    if args.scales:
        tta["scales"] = tuple(args.scales)
    if args.flip:
        tta["flip"] = True
    result = run_predict(
        checkpoint=args.checkpoint, inputs=args.inputs, output=args.output, config=args.config,
        overrides=args.set, tta=tta, window=tuple(args.window) if args.window else None,
        overlap=args.overlap, stride=args.output_stride, probabilities=args.probabilities,
        cityscapes_submission=args.cityscapes_submission, overlay_video=args.overlay_video,
        overwrite=args.overwrite, max_pixels=args.max_pixels, device=args.device, progress=not args.no_progress,
    )
    print(f"Wrote {len(result.written)} files to {args.output}")
    if result.failed:
        print(f"atrous predict: skipped {len(result.failed)} input(s), the others were predicted:", file=sys.stderr)
        for path, reason in result.failed:
            print(f"  {path}: {reason}", file=sys.stderr)
        return 1
    return 0


def _evaluate_cityscapes(args: argparse.Namespace) -> int:
    from .evaluation.cityscapes_eval import evaluate_cityscapes, format_scores, write_scores

    scores = evaluate_cityscapes(args.results, args.gt, split=args.split)
    print(format_scores(scores))
    print(f"{scores['images']} images of gtFine/{args.split} scored by {scores['evaluator']}")
    if args.output:
        write_scores(args.output, scores)
        print(f"Wrote {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .deploy.export import export_checkpoint

    cfg = load_config(args.config, _overrides(args)) if args.config else _stored_config(args)
    _check_export_image_size(args.image_size, cfg)
    result, folded = export_checkpoint(
        args.checkpoint, args.output, args.format, config=cfg, fold_bn=args.fold_bn, overwrite=args.overwrite,
        inputs=[_config_file(args.config)], image_size=tuple(args.image_size), opset=args.opset,
        dynamic=not args.static,
    )
    if folded:
        print(folded)
    shape = "(N, 3, H, W) dynamic" if result.dynamic else f"{result.example_shape} fixed"
    opset = f", opset {result.opset}" if result.opset else ""
    print(f"Wrote {result.path} ({result.format}{opset}; input {shape})")
    if result.max_abs_diff is not None:
        print(f"max |exported - PyTorch| = {result.max_abs_diff:.2e} on a new batch size and image size")
    return 0


def _config_file(config: str | None) -> str | None:
    """The file a ``--config`` names, when it is a path rather than a packaged name."""
    return config if config and Path(config).is_file() else None


def _benchmark(args: argparse.Namespace) -> int:
    from .deploy import benchmark
    from .io import atomic_write, check_output

    if bool(args.config) == args.peers:
        raise ConfigError("give either --config CONFIG or --peers")
    if args.output:  # before minutes of measuring
        check_output(args.output, inputs=[_config_file(args.config)], overwrite=args.overwrite)
    settings = benchmark.BenchmarkSettings(
        device=args.device, image_size=tuple(args.image_size), batch=args.batch,
        train_image_size=tuple(args.train_image_size) if args.train_image_size else None,
        train_batch=args.train_batch, precision=args.precision, channels_last=args.channels_last,
        compile=args.compile, fold_bn=args.fold_bn, repeats=args.repeats, warmup=args.warmup,
        phases=tuple(args.phases), threads=args.threads,
    )
    if args.peers:
        report = benchmark.benchmark_peers(settings)
    else:
        report = benchmark.benchmark_config(args.config, settings, _overrides(args))
    print(benchmark.format_report(report))
    if args.output:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(args.output, lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
        print(f"Wrote {args.output}")
    return 0


def _benchmark_data(args: argparse.Namespace) -> int:
    from .deploy.data_benchmark import benchmark_data, format_data_report, train_images_per_s_from
    from .io import atomic_write, check_output

    if args.output:  # before minutes of measuring
        check_output(args.output, inputs=[args.train_results], overwrite=args.overwrite)
    train, source = train_images_per_s_from(args.train_results) if args.train_results else (None, None)
    report = benchmark_data(args.root, frames=args.frames, repeats=args.repeats, train_images_per_s=train)
    print(format_data_report(report, source))
    if args.output:
        text = json.dumps(report, indent=2) + "\n"
        atomic_write(args.output, lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
        print(f"Wrote {args.output}")
    return 0


def _check_data(args: argparse.Namespace) -> int:
    from .data.base import DatasetError
    from .data.build import build_dataset
    from .data.check import check_dataset, format_problems

    cfg = load_config(args.config, _overrides(args))
    data_cfg = cfg.get("data") or {}
    split_cfg = data_cfg.get(args.split, {"split": args.split})  # as SegmentationDataModule reads it
    dataset = build_dataset(data_cfg.get("dataset") or {"name": "synthetic"}, split_cfg, train=False)
    workers = args.num_workers if args.num_workers is not None else int(data_cfg.get("num_workers", 0))
    if workers < 0:
        raise InputError(f"--num-workers {workers}: give 0 (read in this process) or more worker processes")
    problems = check_dataset(dataset, num_workers=workers, progress=not args.no_progress, description=f"data.{args.split}")
    where = f"data.{args.split} of {args.config}"
    if problems:
        print(format_problems(problems))
        raise DatasetError(
            f"{len(problems)} of {len(dataset)} items of {where} cannot be read as training reads them "
            "(listed above); fix or remove those files and run atrous check-data again"
        )
    print(f"{where}: all {len(dataset)} items read; images and label maps agree in size and hold only valid labels")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.output), list(args.overrides))


def _evaluation_options(p: argparse.ArgumentParser) -> None:
    """validate/test: the test-time strategy (the config's evaluate: section; these override it)."""
    p.add_argument("--tta", help="test-time preset: none, deeplabv3, denseaspp-official (--scales/--flip override it)")
    p.add_argument("--scales", nargs="+", type=float, metavar="S", help="input scales, e.g. 0.5 0.75 1 1.25 1.5 1.75")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="also predict left-right flipped inputs (--no-flip: not, whatever the preset)")
    p.add_argument("--window", nargs=2, type=int, metavar=("H", "W"), help="sliding-window size (the training crop)")
    p.add_argument("--overlap", type=float, help="overlap of neighbouring windows (default 1/3)")
    p.add_argument("--output-stride", type=int, help="evaluate at this output stride (e.g. 8 for a model trained at 16)")
    p.add_argument("--labels", choices=["original", "resized"],
                   help="score against the label maps as on disk (default) or resized with the images")
    p.add_argument("--sweep", action="store_true",
                   help="DeepLabv3 Tables 4/6: output stride 16 and 8 x single scale, +MS, +MS+flip; writes sweep.md/json")


# -- checks before a command runs ------------------------------------------------------------------


def check_config(cfg: Mapping[str, Any], where: str = "") -> None:
    """Validate a whole config, overrides applied: each section by the module that owns it
    (``model``: :mod:`atrous.models.build`, ``data``: :mod:`atrous.data.build`, ``train``:
    :mod:`atrous.training.config`). Raises :class:`ConfigError` naming the key and the value."""
    from .data.build import check_data_section
    from .models.build import check_model_section
    from .training.config import check_train_section

    if "model" not in cfg:
        raise ConfigError(f"{where}the config has no 'model' section; start from a shipped one (`atrous zoo`)")
    try:
        check_model_section(cfg["model"])
        check_data_section(cfg.get("data"))
        check_train_section(cfg.get("train"))
    except ConfigError as err:
        raise ConfigError(f"{where}{err}") from err


def _check_arguments(args: argparse.Namespace) -> None:
    """What can be checked before a command starts: its config (every command with --config,
    overrides applied) and its --device."""
    from .devices import resolve_device

    overrides = list(getattr(args, "overrides", []) or []) + list(getattr(args, "set", []) or [])
    configs = [args.config] if isinstance(getattr(args, "config", None), str) else []
    configs += list(getattr(args, "configs", None) or [])  # atrous compare
    for config in configs:
        check_config(load_config(config, overrides), f"{config}: ")
    if isinstance(getattr(args, "device", None), str):
        resolve_device(args.device)


def _check_export_image_size(image_size: list[int], cfg: Mapping[str, Any]) -> None:
    """``export --image-size H W``: positive, and at least twice the model's output stride (the
    exporter traces sizes that small as constants, and a dynamic export checks a smaller input)."""
    import torch

    from .models import build_model

    height, width = image_size
    if height < 1 or width < 1:
        raise InputError(f"--image-size {height} {width}: height and width must be positive, e.g. 512 1024")
    with torch.device("meta"):  # the architecture only: no memory, no weights
        stride = build_model(cfg, pretrained_backbone=False).output_stride
    if min(height, width) < 2 * stride:
        raise InputError(
            f"--image-size {height} {width}: the model's output stride is {stride}, so the example input must "
            f"be at least {2 * stride}x{2 * stride}; e.g. --image-size 512 1024"
        )


# -- the error boundary -------------------------------------------------------------------------

def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def report_error(err: BaseException) -> int:
    """Print ``err`` the way the command line does and return the exit status (see the module
    docstring): user errors and a full disk as one line (2), anything else with its traceback (1)."""
    message = worker_error_message(err)  # a user error raised in a DataLoader worker
    if message is None and isinstance(err, UserError):
        message = str(err)
    full = disk_full_cause(err)
    if message is None and full is not None:
        message = disk_full_message(full)
    if message is not None:
        print(f"atrous: error: {_one_line(message)}", file=sys.stderr)
        return EXIT_USER_ERROR
    traceback.print_exception(err, file=sys.stderr)
    print(INTERNAL_ERROR_LINE, file=sys.stderr)
    return EXIT_INTERNAL_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atrous", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser, required: bool = True) -> argparse.ArgumentParser:
        stored = "" if required else " (default: the config the --checkpoint stores)"
        p.add_argument("--config", required=required, help="YAML config file" + stored)
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config values")
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
        return p

    def checkpoint_or_weights(p: argparse.ArgumentParser, required: bool,
                              checkpoint_help: str = "atrous checkpoint (.ckpt)") -> None:
        group = p.add_mutually_exclusive_group(required=required)
        group.add_argument("--checkpoint", help=checkpoint_help)
        group.add_argument("--weights", metavar="NAME",
                           help="published weights by name instead (atrous weights lists them; downloaded once)")

    fit = with_config(sub.add_parser("fit", help="train a model"))
    fit.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                     help="continue the run in train.output_dir from its last.ckpt (or from the given checkpoint)")
    fit.add_argument("--overwrite", action="store_true",
                     help="start afresh in a train.output_dir that holds a previous run (its outputs are moved "
                          "aside into <output_dir>/replaced-<time>/)")
    fit.set_defaults(func=_fit)
    for stage, name in (("val", "validate"), ("test", "test")):
        ev = with_config(sub.add_parser(name, help=f"evaluate a checkpoint on the {stage} split"), required=False)
        checkpoint_or_weights(ev, required=False, checkpoint_help="checkpoint (default: the run's best.ckpt)")
        ev.add_argument("--output", help="folder for metrics.json (default: <output_dir>/" + name + ")")
        _evaluation_options(ev)
        ev.set_defaults(func=lambda a, s=stage: _evaluate(a, s))

    info = with_config(sub.add_parser("info", help="parameters, output stride, receptive field and GFLOPs of a config"))
    info.add_argument("--image-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_info)

    cmp_ = sub.add_parser("compare", help="train several configs the same way and tabulate them")
    cmp_.add_argument("configs", nargs="+", help="YAML config files")
    cmp_.add_argument("--output", required=True, help="folder for the runs and results.md")
    cmp_.add_argument("--classes", nargs="*", default=[], help="classes whose IoU gets a column")
    cmp_.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override values in every config")
    cmp_.add_argument("--seeds", nargs="*", type=int, default=[], help="train every config once per seed (train.seed)")
    cmp_.set_defaults(func=_compare)

    zoo = sub.add_parser("zoo", help="print the model zoo as a markdown table")
    zoo.set_defaults(func=_zoo)

    weights = sub.add_parser("weights", help="list published weights (--weights NAME), or fetch and convert one")
    weights.add_argument("name", nargs="?", help="download (once) and convert these weights; print the checkpoint")
    weights.add_argument("--no-progress", action="store_true", help="no download progress bar")
    weights.set_defaults(func=_weights)

    conv = sub.add_parser("convert", help="convert official DenseASPP or torchvision DeepLabV3 weights")
    conv.add_argument("--from", dest="source_format", required=True, choices=["denseaspp-official", "torchvision-deeplabv3"])
    conv.add_argument("file", nargs="?", help="the weights (torchvision: default torch.hub's cache, downloaded if missing)")
    conv.add_argument("--config", required=True, help="YAML config of the same network")
    conv.add_argument("--output", required=True, help="atrous checkpoint to write (.ckpt)")
    conv.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    conv.add_argument("--overwrite", action="store_true", help="replace --output if it exists (never an input)")
    conv.set_defaults(func=_convert)

    pred = sub.add_parser("predict", help="segment images, folders and videos with a checkpoint")
    pred.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) and videos")
    checkpoint_or_weights(pred, required=True)
    pred.add_argument("--config", help="YAML config (default: the config the checkpoint stores)")
    pred.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    pred.add_argument("--output", required=True, help="output folder (outside the inputs)")
    pred.add_argument("--tta", default="none", choices=["none", "deeplabv3", "denseaspp-official"],
                      help="test-time strategy preset; --scales and --flip override it")
    pred.add_argument("--scales", nargs="+", type=float, metavar="S", help="input scales, e.g. 0.5 0.75 1 1.25 1.5 1.75")
    pred.add_argument("--flip", action="store_true", help="also predict left-right flipped inputs")
    pred.add_argument("--window", nargs=2, type=int, metavar=("H", "W"), help="sliding-window size (the training crop)")
    pred.add_argument("--overlap", type=float, default=1 / 3, help="overlap of neighbouring windows (default 1/3)")
    pred.add_argument("--output-stride", type=int, help="evaluate at this output stride (e.g. 8 for a model trained at 16)")
    pred.add_argument("--probabilities", action="store_true", help="also write <name>_probs.npz (float16, C×H×W)")
    pred.add_argument("--cityscapes-submission", action="store_true",
                      help="write only Cityscapes label-id PNGs named for the benchmark")
    pred.add_argument("--overlay-video", action="store_true", help="for videos, also write <name>_overlay.mp4")
    pred.add_argument("--overwrite", action="store_true",
                      help="replace output files that exist (default: refuse before predicting; never an input)")
    pred.add_argument("--max-pixels", type=int, metavar="N",
                      help="skip images of more pixels (default: Pillow's decompression-bomb limit, 89478485; 0: none)")
    pred.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    pred.add_argument("--no-progress", action="store_true", help="no progress bar")
    pred.set_defaults(func=_predict)

    cs = sub.add_parser("evaluate-cityscapes",
                        help="score label-id PNGs with cityscapesScripts' own evaluator (IoU/iIoU, class/category)")
    cs.add_argument("results", help="folder of label-id PNGs (atrous predict --cityscapes-submission)")
    cs.add_argument("--gt", required=True, metavar="ROOT", help="Cityscapes root holding gtFine/<split>/<city>/")
    cs.add_argument("--split", default="val", help="gtFine split to score against (default: val)")
    cs.add_argument("--output", help="also write the scores as JSON to this file")
    cs.set_defaults(func=_evaluate_cityscapes)

    from .analysis.commands import add_parser as add_analyze_parser

    add_analyze_parser(sub)  # atrous analyze <name>: the papers' figures (PNG) and numbers (JSON)

    exp = with_config(sub.add_parser("export", help="export a checkpoint to ONNX, TorchScript or a torch.export program"),
                      required=False)
    checkpoint_or_weights(exp, required=True)
    exp.add_argument("--format", required=True, choices=["onnx", "torchscript", "exported-program"])
    exp.add_argument("--output", required=True, help="file to write (.onnx, .pt, .pt2)")
    exp.add_argument("--image-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"),
                     help="example input for tracing (shapes stay dynamic unless --static)")
    exp.add_argument("--opset", type=int, help="ONNX opset (18 or later; default: the exporter's)")
    exp.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the preceding convolutions first")
    exp.add_argument("--static", action="store_true", help="fix batch and image size to the example's")
    exp.add_argument("--overwrite", action="store_true", help="replace --output if it exists (never an input)")
    exp.set_defaults(func=_export)

    bench = with_config(sub.add_parser("benchmark", help="latency, throughput, memory and TFLOP/s (inference and training)"),
                        required=False)
    bench.add_argument("--peers", action="store_true",
                       help="instead of --config: atrous vs torchvision DeepLabv3-ResNet-50 and vs a plain DenseASPP-121")
    bench.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    bench.add_argument("--image-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    bench.add_argument("--batch", type=int, default=1, help="inference batch size")
    bench.add_argument("--train-image-size", nargs=2, type=int, metavar=("H", "W"), help="training step size (default: --image-size)")
    bench.add_argument("--train-batch", type=int, help="training batch size (default: max(2, --batch))")
    bench.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"], help="autocast precision")
    bench.add_argument("--channels-last", action="store_true")
    bench.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up absorbs compilation)")
    bench.add_argument("--fold-bn", action="store_true", help="fold BatchNorm for inference")
    bench.add_argument("--repeats", type=int, default=10, help="timed runs per phase")
    bench.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    bench.add_argument("--phases", nargs="+", default=["inference", "train"], choices=["inference", "train"])
    bench.add_argument("--threads", type=int, help="CPU threads (default: torch's; 1 is steadier on a busy machine)")
    bench.add_argument("--output", help="write the results as JSON")
    bench.add_argument("--overwrite", action="store_true", help="replace --output if it exists (never an input)")
    bench.set_defaults(func=_benchmark)

    bdata = sub.add_parser("benchmark-data", help="Cityscapes-sized samples decoded and augmented per second per worker")
    bdata.add_argument("--root", help="a Cityscapes root (default: synthetic 1024x2048 frames in a temporary folder)")
    bdata.add_argument("--frames", type=int, default=4, help="synthetic frames to write")
    bdata.add_argument("--repeats", type=int, default=2, help="passes over the frames")
    bdata.add_argument("--train-results", help="an `atrous benchmark --output` JSON: compare with its training images/s")
    bdata.add_argument("--output", help="write the results as JSON")
    bdata.add_argument("--overwrite", action="store_true", help="replace --output if it exists (never an input)")
    bdata.set_defaults(func=_benchmark_data)

    chk = with_config(sub.add_parser("check-data", help="read every image and label map of a split and list every problem"))
    chk.add_argument("--split", default="train", choices=["train", "val", "test"], help="which data.<split> to scan")
    chk.add_argument("--num-workers", type=int, help="processes reading files (default: data.num_workers, else 0)")
    chk.add_argument("--no-progress", action="store_true", help="no progress bar")
    chk.set_defaults(func=_check_data)

    demo = sub.add_parser("demo", help="run the main job on the built-in data")
    demo.add_argument("--output", default="runs/demo", help="output folder")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override demo config values")
    demo.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    try:
        _check_arguments(args)
        if getattr(args, "weights", None):  # --weights NAME: the converted checkpoint, then as --checkpoint
            from .models.pretrained import resolve_checkpoint

            args.checkpoint = str(resolve_checkpoint(args.weights, progress=not getattr(args, "no_progress", False)))
        return args.func(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as err:  # the one error boundary: see report_error
        return report_error(err)


if __name__ == "__main__":
    sys.exit(main())
