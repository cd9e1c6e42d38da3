"""``atrous info``, ``zoo``, ``weights``, ``convert`` and ``export``: the models themselves."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, config_name, list_configs, load_config
from ..engines.choices import EXPORT_FORMATS
from ..errors import InputError
from ..models.choices import CONVERT_FORMATS
from .options import checkpoint_or_weights, command_config, config_file, with_config


def add_info(sub: argparse._SubParsersAction) -> None:
    info = with_config(sub.add_parser("info", help="parameters, output stride, receptive field and GFLOPs of a config"))
    info.add_argument("--image-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=info_command)


def info_command(args: argparse.Namespace) -> int:
    from ..models import figures

    experiment = args.experiment
    size = tuple(args.image_size)
    try:  # the packaged configs' figures are declared; any other model is built on the meta device
        info = figures.declared_info(experiment.config["model"], size) or figures.measure_info(experiment.model, size)
    except ConfigError as err:
        raise ConfigError(f"{args.config}: {err}") from err
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


def add_zoo(sub: argparse._SubParsersAction) -> None:
    zoo = sub.add_parser("zoo", help="print the model zoo as a markdown table")
    zoo.set_defaults(func=zoo_command)


def zoo_command(args: argparse.Namespace) -> int:
    from ..models import figures

    rows = []
    for path in list_configs():
        cfg = load_config(path)
        info = figures.info(cfg["model"])  # declared (tests/test_startup.py checks them against builds)
        ref = cfg.get("reference", {}) or {}
        name = config_name(path)
        rows.append(
            (name, cfg["model"]["backbone"]["name"], cfg["model"]["head"]["name"], info["output_stride"],
             info["receptive_field"], info["params_total"], info["params_trainable"], ref.get("source", ""))
        )
    print("| config | backbone | head | OS | RF | params | trainable | reproduces |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for name, backbone, head, os_, rf, total, trainable, source in rows:
        print(f"| `{name}` | {backbone} | {head} | {os_} | {rf} | {total:,} | {trainable:,} | {source} |")
    return 0


def add_weights(sub: argparse._SubParsersAction) -> None:
    weights = sub.add_parser("weights", help="list published weights (--weights NAME), or fetch and convert one")
    weights.add_argument("name", nargs="?", help="download (once) and convert these weights; print the checkpoint")
    weights.add_argument("--no-progress", action="store_true", help="no download progress bar")
    weights.set_defaults(func=weights_command)


def weights_command(args: argparse.Namespace) -> int:
    from ..models.pretrained import resolve_checkpoint, weights_table

    if args.name is None:
        print(weights_table())
        return 0
    path = resolve_checkpoint(args.name, progress=not args.no_progress)
    print(f"{args.name}: {path}")
    print(f"Use it with --weights {args.name} (or --checkpoint {path}), e.g. atrous predict --weights {args.name} "
          "IMAGE --output OUT")
    return 0


def add_convert(sub: argparse._SubParsersAction) -> None:
    conv = sub.add_parser("convert", help="convert official DenseASPP or torchvision DeepLabV3 weights")
    conv.add_argument("--from", dest="source_format", required=True, choices=list(CONVERT_FORMATS))
    conv.add_argument("file", nargs="?", help="the weights (torchvision: default torch.hub's cache, downloaded if missing)")
    conv.add_argument("--config", required=True, help="YAML config of the same network")
    conv.add_argument("--output", required=True, help="atrous checkpoint to write (.ckpt)")
    conv.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
    conv.add_argument("--overwrite", action="store_true", help="move an existing --output aside into replaced-<time>/ (never an input)")
    conv.set_defaults(func=convert_command)


def convert_command(args: argparse.Namespace) -> int:
    from ..models.convert import convert_checkpoint

    done = convert_checkpoint(args.source_format, args.file, args.experiment.mapping(), args.output,
                              config_file=args.config, overwrite=args.overwrite)
    print(f"Converted {done['file']} ({done['tensors']} tensors, {done['params']:,} parameters)")
    print(f"Wrote {done['output']}: atrous validate --checkpoint {done['output']}")
    return 0


def add_export(sub: argparse._SubParsersAction) -> None:
    exp = with_config(sub.add_parser("export", help="export a checkpoint to ONNX, TorchScript or a torch.export program"),
                      required=False)
    checkpoint_or_weights(exp, required=True)
    exp.add_argument("--format", required=True, choices=list(EXPORT_FORMATS))
    exp.add_argument("--output", required=True, help="file to write (.onnx, .pt, .pt2)")
    exp.add_argument("--image-size", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"),
                     help="example input for tracing (shapes stay dynamic unless --static)")
    exp.add_argument("--opset", type=int, help="ONNX opset (18 or later; default: the exporter's)")
    exp.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the preceding convolutions first")
    exp.add_argument("--static", action="store_true", help="fix batch and image size to the example's")
    exp.add_argument("--overwrite", action="store_true", help="move an existing --output aside into replaced-<time>/ (never an input)")
    exp.set_defaults(func=export_command)


def export_command(args: argparse.Namespace) -> int:
    from ..engines.export import export_checkpoint

    cfg = command_config(args)
    check_export_image_size(args.image_size, cfg)
    result, folded = export_checkpoint(
        args.checkpoint, args.output, args.format, config=cfg, fold_bn=args.fold_bn, overwrite=args.overwrite,
        inputs=[config_file(args.config)], image_size=tuple(args.image_size), opset=args.opset,
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


def check_export_image_size(image_size: list[int], cfg: Mapping[str, Any]) -> None:
    """``export --image-size H W``: positive, and at least twice the model's output stride (the
    exporter traces sizes that small as constants, and a dynamic export checks a smaller input)."""
    import torch

    from ..data.image_files import check_image_pixels
    from ..models import build_model

    height, width = image_size
    if height < 1 or width < 1:
        raise InputError(f"--image-size {height} {width}: height and width must be positive, e.g. 512 1024")
    check_image_pixels("--image-size", height, width, InputError)
    with torch.device("meta"):  # the architecture only: no memory, no weights
        stride = build_model(cfg, pretrained_backbone=False).output_stride
    if min(height, width) < 2 * stride:
        raise InputError(
            f"--image-size {height} {width}: the model's output stride is {stride}, so the example input must "
            f"be at least {2 * stride}x{2 * stride}; e.g. --image-size 512 1024"
        )
