"""``atrous fit | validate | test``: build the Trainer from a config and run it.

Outputs of a run (``train.output_dir``, which the run owns: see :mod:`.run_folder`): ``checkpoints/last.ckpt`` and ``checkpoints/best.ckpt``
(best validation mIoU, written atomically), TensorBoard logs in ``tb/``, a CSV log in
``csv/metrics.csv``, ``metrics.json`` (the best checkpoint's validation metrics), and ``splits/train.txt``
+ ``val.txt`` when a flat folder dataset is partitioned by ``val_fraction`` (read back on resume).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import MisconfigurationException

from ..config import ConfigError, freeze, thaw
from ..data.cityscapes import Cityscapes
from ..data.evaluation_items import EvaluationItems
from ..data.folder_splits import resumed_split_lists, save_partition
from ..data.spec import DataSpec
from ..devices import resolve_device
from ..engines import EngineOptions, build_engine
from ..engines.precision import AUTO, PrecisionChoice, choose_training_precision
from ..errors import CheckpointError, DiskFullError
from ..evaluation.strategy import EvaluationStrategy
from ..io import atomic_write, json_text
from ..models.checkpoint import load_state, read_checkpoint
from ..models.finetune import load_for_finetuning
from ..models.published import PUBLISHED_WEIGHTS
from .callbacks import AtomicCheckpointIO, ClosingCheckpoints, StepSeedCallback, is_disk_full
from .class_weights import (
    evaluation_class_weights,
    run_class_weights,
    weight_mode,
    with_class_weights,
    write_weights,
)
from .datamodule import SegmentationDataModule
from .experiment import Experiment
from .loggers import METRICS_FILE, build_loggers, truncate_metrics
from .module import SegmentationTask
from .resume import check_resume_checkpoint, check_resumed_settings
from .run_folder import RunLock, claim_output_dir
from .train_section import TrainConfig

# metrics.json's "best_checkpoint": which weights best.ckpt holds (see callbacks.ClosingCheckpoints)
BEST_RULES = {True: "highest validation mIoU", False: "final weights (no validation ran during training)"}


def build_trainer(cfg: TrainConfig, *, for_fit: bool, extra_callbacks: Sequence[L.Callback] = ()) -> L.Trainer:
    out = Path(cfg.output_dir)
    callbacks: list[L.Callback] = [StepSeedCallback(cfg.seed), *extra_callbacks]
    loggers: list[Any] | bool = False
    if for_fit:
        callbacks += [
            ModelCheckpoint(
                dirpath=out / "checkpoints", filename="best", monitor="val/mIoU", mode="max", save_top_k=1,
                auto_insert_metric_name=False, enable_version_counter=False,
            ),
            # A separate, unmonitored callback: `save_last=True` on the one above writes last.ckpt
            # only when best.ckpt improves, so an epoch without a new best would be lost on resume.
            ModelCheckpoint(dirpath=out / "checkpoints", filename="last", save_top_k=1, enable_version_counter=False),
            ClosingCheckpoints(out / "checkpoints"),  # a run of any length ends with last.ckpt and best.ckpt
            LearningRateMonitor(logging_interval="step"),
        ]
        loggers = build_loggers(cfg.loggers, out)
    if cfg.progress_bar:
        callbacks.append(TQDMProgressBar(refresh_rate=1))
    try:
        return _trainer(cfg, out, callbacks, loggers)
    # The names and pairings are checked where the train section is parsed; what only this
    # machine can judge (CUDA devices that are not there) Lightning refuses with this exception.
    except MisconfigurationException as err:
        raise ConfigError(f"train: {err}") from err


def _trainer(cfg: TrainConfig, out: Path, callbacks: list[L.Callback], loggers: list[Any] | bool) -> L.Trainer:
    return L.Trainer(
        accelerator=cfg.accelerator,
        devices=thaw(cfg.devices),
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=training_precision(cfg).precision,
        max_epochs=cfg.max_epochs,
        max_steps=cfg.max_steps,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_val=cfg.gradient_clip_val,
        sync_batchnorm=cfg.sync_batchnorm,
        deterministic=lightning_deterministic(cfg),
        log_every_n_steps=cfg.log_every_n_steps,
        check_val_every_n_epoch=cfg.check_val_every_n_epoch,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        callbacks=callbacks,
        logger=loggers,
        plugins=[AtomicCheckpointIO()],
        use_distributed_sampler=False,  # EpochShardSampler shards (and seeds) the data itself
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        default_root_dir=str(out),
    )


@contextmanager
def interrupts_as_keyboard_interrupt(trainer: L.Trainer) -> Iterator[None]:
    """Lightning answers Ctrl-C by shutting down gracefully and calling ``sys.exit(1)``; turn that
    exit back into the :class:`KeyboardInterrupt` it was, so the command line exits with 130."""
    try:
        yield
    except SystemExit as err:
        if trainer.interrupted and err.code == 1:
            raise KeyboardInterrupt from err
        raise


def on_cuda(cfg: TrainConfig) -> bool:
    """Whether the Trainer of ``cfg`` runs on CUDA GPUs."""
    return cfg.accelerator in ("gpu", "cuda") or (cfg.accelerator == "auto" and torch.cuda.is_available())


def training_precision(cfg: TrainConfig) -> PrecisionChoice:
    """Lightning's precision for ``train.precision`` (``auto``: chosen from the hardware,
    :func:`~atrous.engines.precision.choose_training_precision`)."""
    if cfg.precision == AUTO:
        return choose_training_precision(on_cuda(cfg))
    return PrecisionChoice(cfg.precision, "train.precision")


def training_memory_format(cfg: TrainConfig) -> torch.memory_format:
    """The layout the model trains in: ``train.memory_format`` (``auto``: channels_last on the
    CPU, where oneDNN's convolutions are fastest in it, NCHW on CUDA)."""
    if cfg.memory_format == "channels_last" or (cfg.memory_format == "auto" and not on_cuda(cfg)):
        return torch.channels_last
    return torch.contiguous_format


def lightning_deterministic(cfg: TrainConfig) -> bool | str:
    """``train.deterministic`` as Lightning takes it. On CUDA: ``"warn"``: the backward passes of
    bilinear upsampling (every segmentor's last step) and adaptive average pooling (ASPP's image
    pooling) have no deterministic CUDA kernel, and strict mode would refuse to train; torch
    warns about them once and makes every other operation deterministic. On the CPU: strict."""
    if not cfg.deterministic:
        return False
    return "warn" if on_cuda(cfg) else True


def check_output_dir(path: str | Path) -> None:
    """``train.output_dir`` must be a folder this process can create or write in; checked
    before any data is read, without creating anything."""
    folder = Path(path)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(
            f"train.output_dir {folder}: {existing} is a file, not a folder; choose another train.output_dir"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"train.output_dir {folder}: no permission to write in {existing}; choose a folder you can write to"
        )


def load_weights(task: SegmentationTask, path: str | Path) -> None:
    """Load a checkpoint's model weights (``weights_only``) with a clear error for the wrong model."""
    load_state(task.model, read_checkpoint(path), path)


def init_weights(task: SegmentationTask, cfg: TrainConfig) -> list[str]:
    """Start ``task``'s model from ``train.init_checkpoint`` (a checkpoint file, or the name of
    published weights: ``atrous weights`` lists them), onto the dataset's classes and the
    config's input channels (:func:`~atrous.models.finetune.load_for_finetuning`); returns the
    tensors re-initialised or adapted."""
    source = name = cfg.init_checkpoint
    published = name in PUBLISHED_WEIGHTS and not Path(name).is_file()
    if published:
        from ..models.pretrained import resolve_checkpoint

        source = str(resolve_checkpoint(name))
    try:
        return load_for_finetuning(task.model, read_checkpoint(source), source,
                                   class_names=task.hparams["class_names"], match_classes=cfg.init_match_classes)
    except CheckpointError as err:
        if not published:
            raise
        raise CheckpointError(
            f"{err} The published weights {name} are the network of the packaged config "
            f"{PUBLISHED_WEIGHTS[name].config}: copy its model section (num_classes and in_channels may differ)."
        ) from err


def _seed(cfg: TrainConfig) -> None:
    L.seed_everything(cfg.seed, workers=True, verbose=False)


def _is_launching_process() -> bool:
    """False in the processes a DDP launcher started (they inherit rank 0's folder and lock)."""
    node_rank = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", 0)))
    return getattr(rank_zero_only, "rank", 0) == 0 and node_rank == 0


def _resume_path(cfg: TrainConfig, resume: bool | str) -> Path | None:
    if not resume:
        return None
    path = Path(cfg.output_dir) / "checkpoints" / "last.ckpt" if resume is True else Path(resume)
    if not path.is_file():
        raise ConfigError(
            f"--resume: no checkpoint at {path}; start a new run without --resume "
            "(with --overwrite if the folder holds an interrupted run's logs)"
        )
    return path


def fit(
    config: Experiment | Mapping[str, Any],
    *,
    resume: bool | str = False,
    overwrite: bool = False,
    callbacks: Sequence[L.Callback] = (),
) -> dict[str, Any]:
    """Train; returns (and writes to ``metrics.json``) the best checkpoint's validation metrics.

    The run owns ``train.output_dir`` (see :mod:`.run_folder`): a folder that holds a previous
    run is refused unless ``resume`` continues it or ``overwrite`` moves its outputs aside, and
    a lock file refuses a second concurrent run into it.

    ``resume``: ``True`` continues from the run's ``last.ckpt``, a path from that checkpoint
    (checked to be a training checkpoint of this config's model; the CSV log is cut back to it).
    ``overwrite``: start afresh in a folder that holds a previous run.
    ``callbacks``: extra Lightning callbacks.
    """
    experiment = Experiment.of(config)
    cfg = experiment.train
    check_output_dir(cfg.output_dir)
    out = Path(cfg.output_dir)
    ckpt_path = _resume_path(cfg, resume)
    _seed(cfg)
    data = SegmentationDataModule(_resumed_data(experiment, out) if ckpt_path is not None else experiment.data,
                                  seed=cfg.seed)
    weights_record = None
    if mode := weight_mode(experiment.config):  # class weights from the training split, once per run
        weights, weights_record = run_class_weights(data.splits["train"], mode, out, reuse=ckpt_path is not None,
                                                    num_workers=data.num_workers, progress=cfg.progress_bar)
        experiment = Experiment(freeze(with_class_weights(experiment.config, weights)), experiment.source)
    from_checkpoint = ckpt_path is not None or bool(cfg.init_checkpoint)
    task = SegmentationTask(experiment, data.classes.names, data.classes.ignore_index,
                            pretrained_backbone=not from_checkpoint)
    checkpoint = check_resume_checkpoint(ckpt_path, task.state_dict()) if ckpt_path else None
    if checkpoint is not None:
        check_resumed_settings(checkpoint, task.train_cfg, ckpt_path)
    if checkpoint is None and cfg.init_checkpoint:
        init_weights(task, cfg)
    task.model.to(memory_format=training_memory_format(cfg))
    launching = _is_launching_process()
    with RunLock(out) if launching else nullcontext():
        if launching:
            claim_output_dir(out, resume=checkpoint is not None, overwrite=overwrite)
            if weights_record is not None:
                write_weights(out, weights_record)
            if checkpoint is not None:
                truncate_metrics(out / "csv" / METRICS_FILE, int(checkpoint["global_step"]))
            save_partition(out, data.splits)  # a flat folder's train/val file lists
        del checkpoint  # Lightning reads it again (weights_only, through AtomicCheckpointIO)
        trainer = build_trainer(cfg, for_fit=True, extra_callbacks=callbacks)
        with interrupts_as_keyboard_interrupt(trainer):
            trainer.fit(task, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
        best = out / "checkpoints" / "best.ckpt"
        metrics = evaluate(experiment, best, stage="val", task=task, data=data)
        closing = next(c for c in trainer.callbacks if isinstance(c, ClosingCheckpoints))
        metrics["best_checkpoint"] = BEST_RULES[closing.validated]
        precision = training_precision(cfg)
        metrics["train_precision"] = {"precision": precision.precision,
                                      "reason": precision.reason if cfg.precision == AUTO else None}
        if trainer.is_global_zero:
            write_metrics(out / "metrics.json", metrics)
    return metrics


def _resumed_data(experiment: Experiment, out: Path) -> DataSpec:
    """The data of a resumed run: a flat folder's partition as the run stored it."""
    section = experiment.section("data")
    resumed = resumed_split_lists(section, out)
    return experiment.data if resumed is section else DataSpec.from_mapping(resumed)


def evaluate(
    config: Experiment | Mapping[str, Any],
    checkpoint: str | Path | None,
    *,
    stage: str = "val",
    task: SegmentationTask | None = None,
    data: SegmentationDataModule | None = None,
    strategy: EvaluationStrategy | None = None,
    engine: EngineOptions | None = None,
) -> dict[str, Any]:
    """Validate or test a checkpoint; returns the metrics dict (``mIoU``, ``per_class_iou``, ...).

    ``engine`` runs the model in another engine (:mod:`atrous.engines`: onnxruntime, OpenVINO,
    int8, torch with channels_last or compiled), built at the strategy's output stride; the
    metrics record it under ``"engine"``. ``None``: the model as the task holds it (the torch
    engine's defaults when the strategy sets another output stride).

    ``strategy`` (``atrous validate|test``: the config's ``evaluate:`` section and the command
    line, see :mod:`atrous.evaluation.strategy`) sets the test-time strategy and where the labels
    live; the metrics then record it under ``"evaluation"``, and a Cityscapes validation (19
    classes) adds the four benchmark scores under ``"cityscapes"``. ``None``: one forward pass
    against the transformed labels, as validation during ``fit``. Either way the split is sharded
    across processes by the same sampler and the confusion matrices are summed.
    """
    experiment = Experiment.of(config)
    cfg = experiment.train
    if task is None and weight_mode(experiment.config):
        weighted = evaluation_class_weights(experiment.config, Path(cfg.output_dir))
        experiment = Experiment(freeze(weighted), experiment.source)
    if data is None or stage not in data.splits:
        data = SegmentationDataModule(experiment.data, stages=(stage,))
    if task is None:
        task = SegmentationTask(
            experiment, data.classes.names, data.classes.ignore_index, pretrained_backbone=checkpoint is None
        )
    if checkpoint is not None:
        load_weights(task, checkpoint)
    model = task.model
    stride = strategy.output_stride if strategy is not None else None
    if engine is not None or stride is not None:  # the engine runs at the strategy's output stride
        task.model = build_engine(model, replace(engine or EngineOptions(), output_stride=stride), _engine_device(cfg))
        engine = task.model.options  # --precision auto resolved
    if strategy is not None:
        cityscapes = _prepare_evaluation_split(data, stage, strategy, experiment.data)
        task.set_evaluation(strategy, cityscapes_scores=cityscapes)
    if cfg.limit_val_batches == 0:  # no validation during fit; an evaluation scores the whole split
        cfg = replace(cfg, limit_val_batches=1.0)
    if engine is not None:  # the engine's --precision runs the model, not the training precision
        cfg = replace(cfg, precision="32-true")
    trainer = build_trainer(cfg, for_fit=False)
    try:
        with interrupts_as_keyboard_interrupt(trainer):
            if stage == "val":
                trainer.validate(task, datamodule=data, verbose=False)
            else:
                trainer.test(task, datamodule=data, verbose=False)
    finally:
        task.set_evaluation(None)
        task.model = model
    result = dict(task.last_metrics[stage])
    result["split"] = stage
    result["checkpoint"] = str(checkpoint) if checkpoint else None
    if strategy is not None:
        result["evaluation"] = strategy.to_dict()
    if engine is not None:
        result["engine"] = {"engine": engine.engine, "precision": engine.precision,
                            "precision_reason": engine.precision_reason, "compile": engine.compile,
                            "memory_format": engine.memory_format,
                            "quantized": str(engine.quantized) if engine.quantized else None}
    return result


def _engine_device(cfg: TrainConfig) -> torch.device:
    """The device an evaluation's engine is built for: the Trainer's accelerator."""
    return resolve_device({"gpu": "cuda", "cuda": "cuda", "auto": "auto"}.get(cfg.accelerator, "cpu"))


def _prepare_evaluation_split(
    data: SegmentationDataModule, stage: str, strategy: EvaluationStrategy, spec: DataSpec
) -> bool:
    """Make ``data``'s ``stage`` split yield the labels ``strategy.labels`` asks for (and gtFine
    instance ids for a Cityscapes validation); returns whether the Cityscapes scores apply."""
    dataset = data.splits[stage]
    if isinstance(dataset, EvaluationItems):
        dataset = dataset.dataset
    resizes = spec.resizes(stage)
    cityscapes = stage == "val" and isinstance(dataset, Cityscapes) and dataset.variant == "19"
    original = strategy.labels == "original"
    if (resizes and original) or cityscapes:
        data.splits[stage] = EvaluationItems(dataset, original_labels=original, instances=cityscapes)
    else:
        data.splits[stage] = dataset
    return cityscapes


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` atomically (NaN, for classes never seen, becomes null:
    :func:`atrous.io.json_text`)."""
    text = json_text(dict(metrics))
    try:
        atomic_write(path, lambda tmp: tmp.write_text(text))
    except OSError as err:
        if not is_disk_full(err):
            raise
        raise DiskFullError(f"the disk holding {path.parent} is full: cannot write {path.name}; free some space") from err


def format_table(metrics: Mapping[str, Any]) -> str:
    """Per-class IoU table followed by the summary metrics."""
    lines = [f"{'class':<16} {'IoU':>7}", "-" * 24]
    for name, iou in metrics["per_class_iou"].items():
        lines.append(f"{name:<16} {'   n/a' if iou != iou else f'{100 * iou:6.2f}%':>7}")
    lines.append("-" * 24)
    for key in ("mIoU", "pixel_accuracy", "mean_accuracy", "fw_iou"):
        lines.append(f"{key:<16} {100 * metrics[key]:6.2f}%")
    scores = metrics.get("cityscapes")
    if scores:  # the Cityscapes benchmark's four scores
        for key in ("IoU_class", "iIoU_class", "IoU_category", "iIoU_category"):
            value = scores[key]
            lines.append(f"{key.replace('_', ' '):<16} {'   n/a' if value != value else f'{100 * value:6.2f}%'}")
    if metrics.get("evaluation"):
        lines.append(f"evaluated with   {_describe(metrics['evaluation'])}")
    return "\n".join(lines)


def _describe(evaluation: Mapping[str, Any]) -> str:
    window = evaluation.get("window")
    return EvaluationStrategy(
        tta=evaluation["tta"], scales=tuple(evaluation["scales"]), flip=evaluation["flip"],
        window=tuple(window) if window else None, output_stride=evaluation["output_stride"],
    ).describe() + f"; labels {evaluation['labels']}"
