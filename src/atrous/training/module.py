"""The LightningModule: loss, optimizer, poly schedule and train/val/test mIoU around a Segmentor."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError
from ..evaluation.cityscapes_scores import CityscapesScores
from ..evaluation.metrics import SegmentationMetrics
from ..evaluation.strategy import EvaluationStrategy, predict_scores
from ..models import build_model
from .experiment import Experiment
from .losses import SegmentationLoss, loss_options
from .schedules import build_optimizer, build_scheduler, optimizer_lr, parameter_groups


class SegmentationTask(L.LightningModule):
    """Trains and evaluates the segmentor of an experiment's ``model`` spec.

    Args:
        config: the experiment (or its config mapping, parsed here); the plain mapping is stored
            in checkpoints so that ``atrous validate/test/predict`` rebuild the same model.
        class_names: names of the dataset's classes (train-id order).
        ignore_index: label of unlabelled pixels.
        pretrained_backbone: load ``model.backbone.pretrained`` weights; ``False`` when a
            checkpoint is loaded next, so its ImageNet weights are never fetched to be overwritten.

    Logs per epoch: ``train/loss``, ``train/mIoU`` (the report gives train and val mIoU),
    ``val/loss``, ``val/mIoU``, ``val/pixel_accuracy``, ``val/IoU/<class>``.
    """

    def __init__(
        self,
        config: Experiment | Mapping[str, Any],
        class_names: Sequence[str],
        ignore_index: int = 255,
        *,
        pretrained_backbone: bool = True,
    ) -> None:
        super().__init__()
        experiment = Experiment.of(config)
        self.save_hyperparameters({"config": experiment.mapping(), "class_names": list(class_names),
                                   "ignore_index": ignore_index})
        self.train_cfg = experiment.train
        # False when a checkpoint provides every weight next (resume, init_checkpoint, evaluation).
        self.model = build_model(experiment.model, pretrained_backbone=pretrained_backbone)
        if self.model.num_classes != len(class_names):
            raise ConfigError(
                f"model.num_classes is {self.model.num_classes} but the dataset has {len(class_names)} classes"
            )
        self.criterion = SegmentationLoss(ignore_index, **loss_options(self.train_cfg.loss))
        k = len(class_names)
        weights = self.criterion.class_weights
        if weights is not None and len(weights) != k:
            raise ConfigError(f"train.loss.class_weights: {len(weights)} weights for {k} classes; give one per class")
        self.train_metrics = SegmentationMetrics(k, class_names, ignore_index)
        self.val_metrics = SegmentationMetrics(k, class_names, ignore_index)
        self.test_metrics = SegmentationMetrics(k, class_names, ignore_index)
        self.last_metrics: dict[str, dict[str, Any]] = {}
        # Set by runner.evaluate (atrous validate|test); None: one forward pass, as during fit.
        self.evaluation: EvaluationStrategy | None = None
        self.cityscapes_scores: CityscapesScores | None = None

    def set_evaluation(self, strategy: EvaluationStrategy | None, *, cityscapes_scores: bool = False) -> None:
        """Evaluate with ``strategy`` (multi-scale, flips, windows, output stride) in the
        validation/test steps; ``cityscapes_scores`` also accumulates the four benchmark scores
        (batches then carry gtFine instance ids as a third element)."""
        self.evaluation = strategy
        self.cityscapes_scores = CityscapesScores(self.hparams["ignore_index"]) if cityscapes_scores else None

    # -- train / eval modes ---------------------------------------------------------------
    def train(self, mode: bool = True) -> SegmentationTask:
        super().train(mode)
        if mode and self.train_cfg.freeze_bn:
            self._freeze_batchnorm()
        return self

    def _freeze_batchnorm(self) -> None:
        for m in self.model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def on_train_epoch_start(self) -> None:
        # Lightning restores the submodules' modes captured before validation, which would put
        # frozen BatchNorms (freeze_bn, frozen backbones) back in training mode: re-apply them.
        self.train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    # -- steps ----------------------------------------------------------------------------
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits, aux = self.model.forward_with_aux(images)
        loss = self.criterion(logits, labels, aux)
        self.train_metrics.update(logits.detach().argmax(1), labels)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=images.shape[0])
        return loss

    def _eval_step(self, batch: Sequence[torch.Tensor], metrics: SegmentationMetrics, stage: str) -> None:
        """Predict a batch with the evaluation strategy and accumulate the metrics.

        ``batch``: images ``(N, 3, h, w)``, labels ``(N, H, W)`` of any integer type and optionally gtFine instance ids
        ``(N, H, W)``. When the labels are larger or smaller than the images (original-resolution
        labels of resized images), logits (or averaged probabilities) are resized bilinearly to
        the labels' size before the argmax, as the Cityscapes benchmark scores.
        """
        # Masks travel as uint8 (or whatever integer type a dataset gives); the losses below and
        # the metrics take int64, cast once here as SegmentationLoss does in training.
        images, labels = batch[0], batch[1].long()
        scores, probabilities = predict_scores(self.model, images, tuple(labels.shape[-2:]), self.evaluation)
        if probabilities:
            log_probs = scores.clamp_min(torch.finfo(scores.dtype).tiny).log()
            loss = F.nll_loss(log_probs, labels, ignore_index=self.hparams["ignore_index"])
        else:
            loss = self.criterion(scores, labels)
        preds = scores.argmax(1)
        metrics.update(preds, labels)
        if self.cityscapes_scores is not None and len(batch) > 2:
            self.cityscapes_scores.update(preds, labels, batch[2])
        self.log(f"{stage}/loss", loss, on_epoch=True, batch_size=images.shape[0], sync_dist=True)

    def validation_step(self, batch, batch_idx):
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._eval_step(batch, self.test_metrics, "test")

    def _log_epoch(self, metrics: SegmentationMetrics, stage: str, per_class: bool) -> None:
        result = metrics.compute_metrics()  # confusion matrix summed across processes
        metrics.reset()
        if stage != "train" and self.cityscapes_scores is not None:
            result["cityscapes"] = self.cityscapes_scores.compute()  # summed across processes
            self.cityscapes_scores.reset()
            for key in ("IoU_class", "iIoU_class", "IoU_category", "iIoU_category"):
                self.log(f"{stage}/cityscapes/{key}", result["cityscapes"][key])
        self.last_metrics[stage] = result
        self.log(f"{stage}/mIoU", result["mIoU"], prog_bar=True)
        self.log(f"{stage}/pixel_accuracy", result["pixel_accuracy"])
        if per_class:
            for name, iou in result["per_class_iou"].items():
                if iou == iou:  # not NaN
                    self.log(f"{stage}/IoU/{name}", iou)

    def on_train_epoch_end(self) -> None:
        self._log_epoch(self.train_metrics, "train", per_class=False)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            self.val_metrics.reset()
            return
        self._log_epoch(self.val_metrics, "val", per_class=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test", per_class=True)

    # -- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        cfg = self.train_cfg
        total = int(self.trainer.estimated_stepping_batches)
        # optimizer steps per epoch, as Lightning counts them
        batches = self.trainer.num_training_batches  # inf for a loader without a length
        per_epoch = max(1, math.ceil(batches / self.trainer.accumulate_grad_batches)) if math.isfinite(batches) else 1
        frozen = cfg.freeze_backbone_steps or cfg.freeze_backbone_epochs * per_epoch
        if cfg.lr_multipliers or frozen:  # one group per part of the model (logged as lr-<optimizer>/<part>)
            groups = parameter_groups(self.model, optimizer_lr(cfg.optimizer), cfg.lr_multipliers)
        else:  # one group, as without parameter groups (logged as lr-<optimizer>)
            groups = [{"params": [p for p in self.model.parameters() if p.requires_grad]}]
        optimizer = build_optimizer(groups, cfg.optimizer)
        held = {i: frozen for i, g in enumerate(groups) if g.get("name") == "backbone"} if frozen else None
        sched_cfg = dict(cfg.lr_schedule)
        scheduler = build_scheduler(optimizer, sched_cfg.pop("name", "poly"), total, held, per_epoch, **sched_cfg)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
