"""Training end to end on the built-in synthetic streets, with tiny models and images.

Fit writes checkpoints, logs and metrics; a run killed mid-epoch and resumed ends exactly
where an uninterrupted run does; BN freezing, init checkpoints and the poly schedule work;
wrong checkpoints give clear errors.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch

from atrous.config import ConfigError
from atrous.errors import CheckpointError
from atrous.training.runner import evaluate, fit


def tiny_config(out: Path, **train) -> dict:
    return {
        "model": {
            "num_classes": 19,
            "backbone": {"name": "resnet18", "output_stride": 16},
            "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8, "dropout": 0.1},
            "aux_head": {"feature": "layer3", "channels": 16},
        },
        "data": {
            "dataset": {"name": "synthetic", "image_size": [64, 128]},
            "train": {"split": "train", "length": 8, "transforms": {"scale_range": [0.75, 1.25], "crop_size": [64, 96], "hflip": True}},
            "val": {"split": "val", "length": 4},
            "batch_size": 4,
            "num_workers": 0,
        },
        "train": {
            "max_epochs": 2,
            "optimizer": {"name": "sgd", "lr": 0.01, "momentum": 0.9},
            "output_dir": str(out),
            "progress_bar": False,
            "log_every_n_steps": 1,
            **train,
        },
    }


def test_fit_writes_checkpoints_logs_and_metrics(tmp_path):
    metrics = fit(tiny_config(tmp_path))
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "checkpoints" / "best.ckpt").is_file()
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved) >= {"mIoU", "pixel_accuracy", "per_class_iou"}
    assert saved["mIoU"] == pytest.approx(metrics["mIoU"])
    assert len(saved["per_class_iou"]) == 19 and "car" in saved["per_class_iou"]
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    train_miou = [r["train/mIoU"] for r in rows if r.get("train/mIoU")]
    val_miou = [r["val/mIoU"] for r in rows if r.get("val/mIoU")]
    assert len(train_miou) == 2 and len(val_miou) == 2  # per epoch, as the report gives both
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    ckpt = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["class_names"][13] == "car"


class Crash(L.Callback):
    """Simulates a machine failure in the middle of an epoch."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at_step:
            raise SystemExit("simulated crash")


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(open(run / "csv" / "metrics.csv")))


@pytest.mark.parametrize("num_workers", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_resume_after_a_crash_mid_epoch_ends_where_an_uninterrupted_run_does(tmp_path, num_workers):
    """Bit for bit, with and without DataLoader workers (with workers Lightning creates the
    resumed epoch's iterator before it sets the sampler's epoch), and the CSV log of the
    resumed run equals the uninterrupted run's: the killed attempt's rows are cut back."""

    def config(out: Path) -> dict:
        cfg = tiny_config(out, max_epochs=2)
        cfg["data"]["num_workers"] = num_workers
        return cfg

    fit(config(tmp_path / "full"))
    crashed = config(tmp_path / "crashed")
    with pytest.raises(SystemExit):
        fit(crashed, callbacks=[Crash(at_step=3)])  # 2 steps per epoch: dies inside epoch 2
    assert not list((tmp_path / "crashed" / "checkpoints").glob(".*")), "no torn temporary files"
    assert any(r["step"] == "2" for r in _rows(tmp_path / "crashed")), "the killed attempt logged step 2"
    fit(crashed, resume=True)
    rows = _rows(tmp_path / "crashed")
    assert [r["epoch"] for r in rows if r.get("val/mIoU")] == ["0", "1"], "resuming keeps the log"
    assert rows == _rows(tmp_path / "full"), "no rows of the killed attempt stay mixed in"
    a = _weights(tmp_path / "full" / "checkpoints" / "last.ckpt")
    b = _weights(tmp_path / "crashed" / "checkpoints" / "last.ckpt")
    assert a.keys() == b.keys()
    # float32 by design (training runs in float32): both runs execute the same kernels on the same
    # shapes in the same order on one CPU, so they agree to the bit unless resuming restores a
    # state wrongly (then weights differ by ~lr·grad ≫ 1e-6); 1e-6 is a margin, not a need
    for key in a:
        assert torch.equal(b[key], a[key]), key
    ca = torch.load(tmp_path / "full" / "checkpoints" / "last.ckpt", weights_only=True)
    cb = torch.load(tmp_path / "crashed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert (ca["epoch"], ca["global_step"]) == (cb["epoch"], cb["global_step"]) == (1, 4)


def test_training_batches_are_the_same_with_and_without_workers():
    """The augmented pipeline is a function of (seed, epoch, index): 0 and 2 workers give
    bit-identical batches, epoch after epoch, and another epoch gives other batches."""
    from atrous.training.datamodule import SegmentationDataModule

    cfg = tiny_config(Path("unused"))["data"]

    def batches(num_workers: int, epoch: int) -> list[torch.Tensor]:
        data = SegmentationDataModule({**cfg, "num_workers": num_workers}, seed=3)
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return [images for images, _ in loader]

    for epoch in (0, 1):
        serial, parallel = batches(0, epoch), batches(2, epoch)
        assert len(serial) == len(parallel) == 2
        assert all(torch.equal(a, b) for a, b in zip(serial, parallel, strict=True))
    assert not torch.equal(batches(0, 0)[0], batches(0, 1)[0])


def test_sampler_epoch_set_after_iter_is_honoured_with_workers():
    """The resume case: Lightning calls iter(loader) first and set_epoch later."""
    from atrous.training.datamodule import SegmentationDataModule

    cfg = tiny_config(Path("unused"))["data"]
    data = SegmentationDataModule({**cfg, "num_workers": 2}, seed=3)
    loader = data.train_dataloader()
    iterator = iter(loader)
    loader.sampler.set_epoch(1)
    late = [images for images, _ in iterator]
    expected = SegmentationDataModule(cfg, seed=3).train_dataloader()
    expected.sampler.set_epoch(1)
    assert all(torch.equal(a, b) for (b, _), a in zip(expected, late, strict=True))


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no checkpoint"):
        fit(tiny_config(tmp_path), resume=True)


def test_freeze_bn_keeps_statistics_and_init_checkpoint_loads(tmp_path):
    fit(tiny_config(tmp_path / "stage1", max_epochs=1))
    init = tmp_path / "stage1" / "checkpoints" / "last.ckpt"
    before = _weights(init)
    cfg = tiny_config(tmp_path / "stage2", max_epochs=1, freeze_bn=True, init_checkpoint=str(init))
    cfg["model"]["backbone"]["output_stride"] = 8  # DeepLabv3: fine-tune at output stride 8
    fit(cfg)
    after = _weights(tmp_path / "stage2" / "checkpoints" / "last.ckpt")
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert stats and all(torch.equal(before[k], after[k]) for k in stats)
    convs = [k for k in before if k.endswith("conv1.weight")]
    assert any(not torch.equal(before[k], after[k]) for k in convs)  # weights still train


class Snapshot(L.Callback):
    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_frozen_backbone_stays_frozen_while_the_head_trains(tmp_path):
    """The report trains its heads on a frozen backbone: weights and BN statistics stay put."""
    cfg = tiny_config(tmp_path, max_epochs=1)
    cfg["model"]["backbone"]["frozen"] = True
    cfg["model"].pop("aux_head")
    snapshot = Snapshot()
    fit(cfg, callbacks=[snapshot])
    after = _weights(tmp_path / "checkpoints" / "last.ckpt")
    backbone = [k for k in after if k.startswith("model.backbone.") and "num_batches" not in k]
    assert backbone and all(torch.equal(after[k], snapshot.state[k]) for k in backbone)
    head = "model.head.layers.0.norm1.running_mean"
    assert not torch.equal(after[head], snapshot.state[head])


def test_checkpoint_from_another_model_is_refused(tmp_path):
    fit(tiny_config(tmp_path / "a", max_epochs=1))
    other = tiny_config(tmp_path / "b")
    other["model"]["head"]["growth_channels"] = 4
    with pytest.raises(CheckpointError, match="different model"):
        evaluate(other, tmp_path / "a" / "checkpoints" / "best.ckpt")


def test_poly_schedule_by_iteration(tmp_path):
    fit(tiny_config(tmp_path, max_epochs=2, lr_schedule={"name": "poly", "power": 0.9}))
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    lrs = [float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")]
    total = 4  # 2 epochs x 2 iterations
    expected = [0.01 * (1 - i / total) ** 0.9 for i in range(total)]
    assert lrs == pytest.approx(expected, rel=1e-6)
