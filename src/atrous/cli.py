"""The ``atrous`` command line: fit, validate, test, info, zoo, demo.

Every command that reads a config takes overrides of any config value, either as trailing
``key.path=value`` items or with ``--set``: ``atrous fit --config C train.max_epochs=2``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import CONFIG_ROOT, ConfigError, list_configs, load_config
from .data.base import DatasetError
from .models.backbones.weights import PretrainedWeightsError


def _info(args: argparse.Namespace) -> int:
    from .analysis.complexity import model_info
    from .models import build_model

    cfg = load_config(args.config, _overrides(args))
    if not any(o.startswith("model.backbone.pretrained=") for o in _overrides(args)):
        cfg["model"]["backbone"]["pretrained"] = False  # the architecture is enough here
    try:
        model = build_model(cfg)
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
    metrics = fit(cfg, resume=args.resume or False)
    out = _output_dir(cfg)
    if not _is_rank_zero():
        return 0
    print(format_table(metrics))
    print(f"Wrote {out}/metrics.json, checkpoints in {out}/checkpoints, logs in {out}/tb and {out}/csv")
    return 0


def _evaluate(args: argparse.Namespace, stage: str) -> int:
    from .training.runner import evaluate, format_table, write_metrics

    cfg = load_config(args.config, _overrides(args))
    out_dir = _output_dir(cfg)
    checkpoint = Path(args.checkpoint) if args.checkpoint else out_dir / "checkpoints" / "best.ckpt"
    metrics = evaluate(cfg, checkpoint, stage=stage)
    if not _is_rank_zero():
        return 0
    output = Path(args.output) if args.output else out_dir / ("validate" if stage == "val" else "test")
    write_metrics(output / "metrics.json", metrics)
    print(format_table(metrics))
    print(f"Wrote {output / 'metrics.json'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .training.compare import compare, markdown_table

    results = compare([Path(c) for c in args.configs], Path(args.output), args.classes, args.set)
    if _is_rank_zero():
        print(markdown_table(results, args.classes))
        print(f"Wrote {args.output}/results.md and results.json")
    return 0


def _zoo(args: argparse.Namespace) -> int:
    from .analysis.complexity import count_parameters
    from .models import build_model

    rows = []
    for path in list_configs():
        cfg = load_config(path, ["model.backbone.pretrained=false"])
        model = build_model(cfg)
        total, trainable = count_parameters(model)
        ref = cfg.get("reference", {}) or {}
        name = path.relative_to(CONFIG_ROOT).as_posix()
        rows.append(
            (name, cfg["model"]["backbone"]["name"], cfg["model"]["head"]["name"], model.output_stride,
             model.receptive_field, total, trainable, ref.get("source", ""))
        )
    print("| config | backbone | head | OS | RF | params | trainable | reproduces |")
    print("|---|---|---|---:|---:|---:|---:|---|")
    for name, backbone, head, os_, rf, total, trainable, source in rows:
        print(f"| `{name}` | {backbone} | {head} | {os_} | {rf} | {total:,} | {trainable:,} | {source} |")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.output), list(args.overrides))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="atrous", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", required=True, help="YAML config file")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config values")
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
        return p

    fit = with_config(sub.add_parser("fit", help="train a model"))
    fit.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                     help="resume from the run's last.ckpt (or the given checkpoint)")
    fit.set_defaults(func=_fit)
    for stage, name in (("val", "validate"), ("test", "test")):
        ev = with_config(sub.add_parser(name, help=f"evaluate a checkpoint on the {stage} split"))
        ev.add_argument("--checkpoint", help="checkpoint (default: the run's best.ckpt)")
        ev.add_argument("--output", help="folder for metrics.json (default: <output_dir>/" + name + ")")
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
    cmp_.set_defaults(func=_compare)

    zoo = sub.add_parser("zoo", help="print the model zoo as a markdown table")
    zoo.set_defaults(func=_zoo)

    demo = sub.add_parser("demo", help="run the main job on the built-in data")
    demo.add_argument("--output", default="runs/demo", help="output folder")
    demo.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override demo config values")
    demo.set_defaults(func=_demo)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, PretrainedWeightsError, ValueError) as err:
        print(f"atrous: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
