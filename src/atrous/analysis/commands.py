"""``atrous analyze <name>``: the papers' analyses on a trained model, each writing
``<name>.png`` (the figure) and ``<name>.json`` (the numbers behind it, dashes in the name
become underscores) into ``--output`` (default: ``<run>/analysis``). Files that exist there are
refused before anything runs unless ``--overwrite``, which moves them aside into
``replaced-<time>/``.

  receptive-field  head layers' per-layer/stacked fields (report §4.1) + effective field
  valid-weights    valid taps of a 3×3 atrous filter vs rate (DeepLabv3 Fig. 4)
  similarity       cosine similarity of head features to class means (report Fig. 3)
  block-removal    per-class IoU with the top DenseASPP layers removed (report Fig. 4)
  object-size      IoU per class and object size (report §5.3)
  stride           output stride 8/16/32 × flip × multi-scale (DeepLabv3 Tables 4/6)
  confusion        row-normalised confusion matrix
  curves           training curves from a run's CSV log
  all              every analysis above
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..evaluation.choices import TTA_PRESETS
from . import ERF_TARGETS

# name → (help, default number of images)
ANALYSES: dict[str, tuple[str, int]] = {
    "receptive-field": ("head receptive fields (report §4.1) and the effective receptive field", 8),
    "valid-weights": ("valid weights of a 3×3 atrous filter vs rate (DeepLabv3 Fig. 4)", 1),
    "similarity": ("cosine similarity of head features to class means (report Fig. 3)", 16),
    "block-removal": ("per-class IoU with the top DenseASPP layers removed (report Fig. 4)", 48),
    "object-size": ("IoU per class and object size (report §5.3)", 48),
    "stride": ("output stride 8/16/32 × flip × multi-scale table (DeepLabv3 Tables 4/6)", 16),
    "confusion": ("row-normalised confusion matrix", 48),
    "curves": ("training curves from a run's CSV log", 0),
}
NEEDS_WEIGHTS = ("similarity", "block-removal", "object-size", "stride", "confusion")
DEFAULT_SIMILARITY_CLASSES = ("car", "truck", "bus", "road")


class Context:
    """What the analyses share: config, model (loaded once), dataset and output folder."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.checkpoint = Path(args.checkpoint) if args.checkpoint else None
        self.config = self._config()
        self._model = None
        self._dataset = None
        run = self.run_dir
        self.output = Path(args.output) if args.output else (run / "analysis" if run else Path("analysis"))

    @property
    def run_dir(self) -> Path | None:
        """``--run``, or ``<run>`` for a checkpoint at ``<run>/checkpoints/<name>.ckpt``."""
        if getattr(self.args, "run", None):
            return Path(self.args.run)
        if self.checkpoint is not None and self.checkpoint.parent.name == "checkpoints":
            return self.checkpoint.parent.parent
        return None

    def _config(self) -> dict[str, Any] | None:
        overrides = list(self.args.overrides) + list(self.args.set)
        if self.args.config:  # parsed once by the command line's boundary
            return self.args.experiment.mapping()
        if self.checkpoint is None:
            return None
        from ..models.checkpoint import checkpoint_config, read_checkpoint

        return checkpoint_config(read_checkpoint(self.checkpoint), self.checkpoint, None, overrides)

    def require_config(self) -> dict[str, Any]:
        if self.config is None:
            raise ConfigError(f"analyze {self.args.analysis}: needs a model; pass --checkpoint "
                              "(or --config for an untrained one)")
        return self.config

    @property
    def model(self):  # noqa: ANN201 - a Segmentor
        if self._model is None:
            from ..models import build_model
            from ..models.checkpoint import load_segmentor

            cfg = self.require_config()
            if self.checkpoint is not None:
                self._model, _ = load_segmentor(self.checkpoint, cfg)
            else:
                self._model = build_model(cfg, pretrained_backbone=False).eval()
            self._model.to(self.device)
        return self._model

    @property
    def device(self) -> str:
        from ..devices import resolve_device

        return str(resolve_device(self.args.device))

    @property
    def weights(self) -> str:
        return str(self.checkpoint) if self.checkpoint else "random initialisation (no --checkpoint)"

    @property
    def dataset(self):  # noqa: ANN201 - a SegmentationDataset
        if self._dataset is None:
            from ..data.build import build_dataset

            data = self.require_config().get("data") or {}
            split = self.args.split
            split_cfg = dict(data.get(split) or data.get("val") or {})
            split_cfg["split"] = split
            split_cfg.pop("bootstrap", None)
            self._dataset = build_dataset(data.get("dataset") or {"name": "synthetic"}, split_cfg, train=False)
            if self._dataset.classes.num_classes != self.model.num_classes:
                raise ConfigError(
                    f"the model predicts {self.model.num_classes} classes but the {split} split has "
                    f"{self._dataset.classes.num_classes}; pass the config the model was trained with"
                )
        return self._dataset

    def indices(self, name: str) -> list[int]:
        wanted = self.args.num_images or ANALYSES[name][1]
        n = min(wanted, len(self.dataset))
        if n < 1:
            raise ConfigError(f"the {self.args.split} split is empty")
        return list(range(n))

    def title(self, what: str) -> str:
        model = self.require_config()["model"]
        head, backbone = model["head"]["name"], model["backbone"]["name"]
        weights = self.checkpoint.name if self.checkpoint else "untrained"
        return f"{what}\n{head} on {backbone}, output stride {self.model.output_stride} ({weights})"


def _receptive_field(ctx: Context) -> dict[str, Any]:
    import torch

    from .effective_rf import receptive_field_report

    model = ctx.model
    images = torch.stack([ctx.dataset[i][0] for i in ctx.indices("receptive-field")])
    result = receptive_field_report(model, images, ctx.output / "receptive_field.png", target=ctx.args.target,
                                     title=ctx.title("Receptive fields"))
    e = result["erf"]
    print(f"R_max {result['head']['max_rf']} feature px; theoretical field {result['theoretical']['input_pixels']} px; "
          f"effective: 50% of the gradient in {e['side_50']}×{e['side_50']}, 90% in {e['side_90']}×{e['side_90']}")
    return result


def _valid_weights(ctx: Context) -> dict[str, Any]:
    from .valid_weights import plot_valid_weights, valid_weight_curves

    size = tuple(ctx.args.size) if len(ctx.args.size) == 2 else (ctx.args.size[0],) * 2
    paper = valid_weight_curves(size)
    paper.update(marked_rates=list(ctx.args.rates), title=f"3×3 filter on a {size[0]}×{size[1]} map (DeepLabv3 Fig. 4)")
    panels = [paper]
    if ctx.config is not None:  # the model's own feature map and rates
        model = ctx.model
        x = ctx.dataset[0][0].unsqueeze(0).to(ctx.device)
        import torch

        with torch.no_grad():
            h, w = model.forward_head_features(x)[0].shape[-2:]
        rates = list(getattr(model.head, "atrous_rates", [s.dilation for s in model.head.conv_path()]))
        own = valid_weight_curves((h, w), range(1, max(h, w, *rates) + 1))
        own.update(marked_rates=rates, title=f"this model: {h}×{w} features (input {x.shape[-2]}×{x.shape[-1]}), "
                                             f"rates {', '.join(map(str, rates))}")
        panels.append(own)
    plot_valid_weights(panels, ctx.output / "valid_weights.png")
    result = {"panels": panels, "definition": "fraction of output positions of an HxW map at which exactly v of "
              "the 9 taps of a 3x3 filter with rate r (zero padding r) fall inside the map"}
    at = {r: paper["fractions"][9][r - 1] for r in (1, 6, 12, 18, 24) if r <= len(paper["rates"])}
    print("fraction of positions with all 9 taps valid: " + ", ".join(f"rate {r}: {v:.3f}" for r, v in at.items()))
    return result


def _similarity(ctx: Context) -> dict[str, Any]:
    import torch

    from .common import class_ids, sample
    from .similarity import feature_similarity, plot_similarity, similarity_summary

    ds = ctx.dataset
    items = [sample(ds, i) for i in ctx.indices("similarity")]
    images, labels = torch.stack([it[1] for it in items]), torch.stack([it[2] for it in items])
    names = ctx.args.classes or [c for c in DEFAULT_SIMILARITY_CLASSES if c in ds.classes.names]
    if not names:  # another label space: its four most frequent classes in these images
        counts = torch.bincount(labels[labels < ds.classes.num_classes], minlength=ds.classes.num_classes)
        names = [ds.classes.names[c] for c in counts.argsort(descending=True)[:4] if counts[c] > 0]
    ids = class_ids(ds.classes, names)
    result = feature_similarity(ctx.model, images, labels, ids, ctx.args.prototype)
    # Show the images holding most of the chosen classes (ties: the first).
    score = [sum(bool((labels[i] == c).any()) for c in ids) for i in range(len(items))]
    rows = sorted(range(len(items)), key=lambda i: -score[i])[: ctx.args.rows]
    plot_similarity([items[i][0] for i in rows], result["predictions"][rows], labels[rows], result["maps"][rows],
                    ids, ds.classes, ctx.output / "similarity.png",
                    title=ctx.title(f"Cosine similarity to class mean features ({ctx.args.prototype} prototypes)"))
    summary = similarity_summary(result, ids, ds.classes)
    summary.update(prototype=ctx.args.prototype, num_images=len(items), shown_images=[ds.name(i) for i in rows])
    return summary


def _block_removal(ctx: Context) -> dict[str, Any]:
    from .block_removal import block_removal, denseaspp_head, plot_block_removal
    from .common import sample

    denseaspp_head(ctx.model)  # fail before loading any data
    ds = ctx.dataset
    result = block_removal(ctx.model, ds, ctx.indices("block-removal"), examples=ctx.args.examples)
    items = {i: sample(ds, i) for i in result["predictions"]}
    plot_block_removal(result, ds.classes, ctx.output / "block_removal.png",
                       example_images={i: it[0] for i, it in items.items()},
                       example_truths={i: it[2] for i, it in items.items()},
                       title=ctx.title("Removing the top DenseASPP layers at inference (report Fig. 4)"))
    out = {
        "rows": [{k: v for k, v in r.items() if k != "confusion"} for r in result["rows"]],
        "examples": [ds.name(i) for i in result["predictions"]],
        "num_images": len(result["changed_pixels"]),
        "removal": "the removed layers' outputs are set to zero in the concatenation; no retraining",
    }
    for r in result["rows"]:
        print(f"top {r['removed']} removed (R_max {r['max_rf']:3d}): mIoU {100 * r['mIoU']:.1f}%")
    return out


def _object_size(ctx: Context) -> dict[str, Any]:
    from .common import class_ids
    from .object_size import THING_CLASSES, object_size_analysis, plot_object_size

    ds = ctx.dataset
    names = ctx.args.classes or [c for c in THING_CLASSES if c in ds.classes.names]
    if not names:
        raise ConfigError(f"analyze object-size: none of {list(THING_CLASSES)} is a class here; pass --classes")
    result = object_size_analysis(ctx.model, ds, ctx.indices("object-size"), class_ids(ds.classes, names),
                                  edges=ctx.args.bins)
    plot_object_size(result, ds.classes, ctx.output / "object_size.png",
                     title=ctx.title("Per-class IoU against object size (report §5.3)"))
    return result


def _stride(ctx: Context) -> dict[str, Any]:
    from .stride_table import markdown_table, plot_stride_table, stride_table

    result = stride_table(ctx.model, ctx.dataset, ctx.indices("stride"), output_strides=ctx.args.output_strides,
                          scales=ctx.args.scales)
    result["markdown"] = markdown_table(result)
    plot_stride_table(result, ctx.output / "stride.png", title=ctx.title(
        f"Output stride × test-time strategy, DeepLabv3 Tables 4/6 ({result['num_images']} images)"))
    print(result["markdown"])
    return result


def _confusion(ctx: Context) -> dict[str, Any]:
    from .confusion import confusion_matrix, confusion_summary, plot_confusion

    indices = ctx.indices("confusion")
    summary = confusion_summary(confusion_matrix(ctx.model, ctx.dataset, indices), ctx.dataset.classes)
    summary["num_images"] = len(indices)
    plot_confusion(summary, ctx.output / "confusion.png", title=ctx.title(
        f"Confusion matrix, rows normalised ({len(indices)} images, mIoU {100 * summary['mIoU']:.1f}%)"))
    return summary


def _curves(ctx: Context) -> dict[str, Any]:
    from ..data.palettes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
    from .curves import plot_training_curves, training_series

    run = Path(ctx.args.run) if ctx.args.run else ctx.run_dir
    if run is None:
        raise ConfigError("analyze curves: pass --run DIR (a training run's output folder)")
    log = run / "csv" / "metrics.csv"
    if not log.is_file():
        raise ConfigError(f"analyze curves: no training log at {log}")
    series = training_series(log)
    names, palette = (), None
    if ctx.config is not None:
        names, palette = ctx.dataset.classes.names, ctx.dataset.classes.palette
    elif set(series["val_iou"]) <= set(CITYSCAPES_CLASSES):  # no config: Cityscapes names in the log
        names, palette = CITYSCAPES_CLASSES, CITYSCAPES_PALETTE
    plot_training_curves(log, ctx.output / "curves.png", title=f"Training curves — {run}", class_names=names,
                         palette=palette)
    series["log"] = str(log)
    return series


RUNNERS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "receptive-field": _receptive_field,
    "valid-weights": _valid_weights,
    "similarity": _similarity,
    "block-removal": _block_removal,
    "object-size": _object_size,
    "stride": _stride,
    "confusion": _confusion,
    "curves": _curves,
}


def planned_analyses(ctx: Context) -> list[str]:
    """The analyses to run (``all``: those that apply to this model and run), checked."""
    args = ctx.args
    names = list(RUNNERS) if args.analysis == "all" else [args.analysis]
    planned = []
    for name in names:
        if args.analysis == "all":
            if name == "curves" and ctx.run_dir is None and not args.run:
                print("analyze all: skipping curves (no --run and the checkpoint is not inside a run folder)")
                continue
            if name == "block-removal" and not ctx.model.head.removable_layers():
                print(f"analyze all: skipping block-removal ({type(ctx.model.head).__name__} is not DenseASPP)")
                continue
        if name in NEEDS_WEIGHTS and ctx.checkpoint is None:
            raise ConfigError(f"analyze {name}: needs a trained model; pass --checkpoint")
        planned.append(name)
    return planned


def check_analysis_outputs(ctx: Context, names: list[str]) -> None:
    """Before any analysis runs: refuse outputs that are inputs (always), and existing ones unless
    ``--overwrite``, which moves them aside into ``replaced-<time>/`` (:func:`atrous.io.claim_outputs`)."""
    from ..io import check_output, claim_outputs, output_folder

    output_folder(ctx.output, "--output", create=False)
    inputs = [ctx.checkpoint, ctx.args.config if ctx.args.config and Path(ctx.args.config).is_file() else None]
    files = [name.replace("-", "_") + suffix for name in names for suffix in (".png", ".json")]
    for file in files:
        check_output(ctx.output / file, inputs=inputs, overwrite=True)  # an input: refused always
    aside = claim_outputs(ctx.output, files, overwrite=ctx.args.overwrite)
    if aside is not None:
        print(f"Moved the earlier outputs from {ctx.output} to {aside}")


def run_analysis(args: argparse.Namespace) -> int:
    from .common import write_json

    ctx = Context(args)
    names = planned_analyses(ctx)
    check_analysis_outputs(ctx, names)
    for name in names:
        result = RUNNERS[name](ctx)
        file = name.replace("-", "_")
        meta = {"analysis": name, "weights": ctx.weights if ctx.config is not None else None,
                "config": args.config, "split": args.split if ctx.config is not None else None}
        write_json(ctx.output / f"{file}.json", {**meta, **result})
        print(f"Wrote {ctx.output / file}.png and {file}.json")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``atrous analyze <name> …`` on the main parser's subcommands."""
    analyze = sub.add_parser("analyze", help="the papers' analyses on a model: figures (PNG) and numbers (JSON)",
                             description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = analyze.add_subparsers(dest="analysis", required=True)
    for name, (text, images) in [*ANALYSES.items(), ("all", ("every analysis above", 0))]:
        p = names.add_parser(name, help=text)
        p.add_argument("--checkpoint", help="an atrous checkpoint (its stored config is used unless --config)")
        p.add_argument("--config", help="YAML config (default: the checkpoint's)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config values")
        p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override config values")
        p.add_argument("--split", default="val", help="dataset split to analyse (default: val)")
        p.add_argument("--num-images", type=int, default=None,
                       help=f"images to analyse (default: {images})" if images else "images to analyse")
        p.add_argument("--output", help="output folder (default: <run>/analysis for <run>/checkpoints/*.ckpt)")
        p.add_argument("--overwrite", action="store_true",
                       help="move an existing figure and JSON aside into replaced-<time>/")
        p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        if name in ("receptive-field", "all"):
            p.add_argument("--target", choices=ERF_TARGETS, default=ERF_TARGETS[0],
                           help="ERF of the predicted class's centre logit, or of the sum of all logits")
        if name in ("valid-weights", "all"):
            p.add_argument("--size", nargs="+", type=int, default=[65], metavar="N",
                           help="feature map size N (N×N) or H W (default: 65, as DeepLabv3 Fig. 4)")
            p.add_argument("--rates", nargs="*", type=int, default=[], help="rates to mark on the 65×65 panel")
        if name in ("similarity", "object-size", "all"):
            p.add_argument("--classes", nargs="*", default=[], help="class names (default: see docs/analyses.md)")
        if name in ("similarity", "all"):
            p.add_argument("--rows", type=int, default=3, help="images shown (those holding most of the classes)")
            p.add_argument("--prototype", choices=("dataset", "image"), default="dataset",
                           help="class mean over all analysed images, or per image")
        if name in ("block-removal", "all"):
            p.add_argument("--examples", type=int, default=1, help="example images shown (those the removal changes most)")
        if name in ("object-size", "all"):
            p.add_argument("--bins", nargs="+", type=float, default=[8, 16, 32, 64, 128],
                           help="edges of the sqrt(area) size bins, pixels")
        if name in ("stride", "all"):
            p.add_argument("--output-strides", nargs="+", type=int, default=[8, 16, 32])
            p.add_argument("--scales", nargs="+", type=float, default=list(TTA_PRESETS["deeplabv3"]["scales"]),
                           help="multi-scale inputs (default: DeepLabv3's)")
        if name in ("curves", "all"):
            p.add_argument("--run", help="training run folder with csv/metrics.csv (default: the checkpoint's run)")
        p.set_defaults(func=run_analysis)
