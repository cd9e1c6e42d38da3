"""Recipes as their sources wrote them: torchvision's warm-up (LinearLR, then poly over the
remaining steps) against torch's own schedulers; parameter groups with learning-rate multipliers
(torchvision trains its aux classifier at 10x); a frozen-backbone warm-up; the shipped
torchvision configs carry torchvision's recipe."""

from __future__ import annotations

import csv

import pytest
import torch
from test_training import tiny_config

from atrous.config import ConfigError, load_config
from atrous.training.runner import fit
from atrous.training.schedules import build_scheduler, parameter_groups
from atrous.training.train_section import TrainConfig


def lrs_of(scheduler, optimizer, steps: int) -> list[float]:
    """The learning rate of every group at every step, flattened step by step."""
    out = []
    for _ in range(steps):
        out += [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    return out


def two_groups() -> torch.optim.SGD:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    return torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.1}], lr=0.01, momentum=0.9)


@pytest.mark.parametrize(("total", "warmup"), [(20, 5), (7, 1), (12, 0)])
def test_sequential_warmup_is_torchvisions_linear_then_poly(total, warmup):
    reference_opt = two_groups()
    poly = torch.optim.lr_scheduler.PolynomialLR(reference_opt, total_iters=total - warmup, power=0.9)
    if warmup:
        linear = torch.optim.lr_scheduler.LinearLR(reference_opt, start_factor=0.01, total_iters=warmup)
        reference = torch.optim.lr_scheduler.SequentialLR(reference_opt, [linear, poly], milestones=[warmup])
    else:
        reference = poly
    expected = lrs_of(reference, reference_opt, total)
    optimizer = two_groups()
    ours = build_scheduler(optimizer, "poly", total, power=0.9, warmup_steps=warmup, warmup_mode="sequential",
                           warmup_start_factor=0.01)
    assert lrs_of(ours, optimizer, total) == pytest.approx(expected, rel=1e-9, abs=1e-15)


def test_warmup_epochs_count_epochs_of_steps_as_torchvision_does():
    # torchvision: warmup_iters = iters_per_epoch * lr_warmup_epochs; here 2 epochs of 3 steps
    reference_opt = two_groups()
    linear = torch.optim.lr_scheduler.LinearLR(reference_opt, start_factor=0.01, total_iters=6)
    poly = torch.optim.lr_scheduler.PolynomialLR(reference_opt, total_iters=15 - 6, power=0.9)
    reference = torch.optim.lr_scheduler.SequentialLR(reference_opt, [linear, poly], milestones=[6])
    optimizer = two_groups()
    ours = build_scheduler(optimizer, "poly", 15, None, 3, warmup_epochs=2, warmup_mode="sequential")
    assert lrs_of(ours, optimizer, 15) == pytest.approx(lrs_of(reference, reference_opt, 15), rel=1e-9, abs=1e-15)
    with pytest.raises(ConfigError, match="warmup_steps or warmup_epochs"):
        TrainConfig.from_mapping({"lr_schedule": {"warmup_steps": 2, "warmup_epochs": 1}})


def test_scale_warmup_multiplies_the_schedule_over_all_steps():
    optimizer = two_groups()
    got = lrs_of(build_scheduler(optimizer, "poly", 10, warmup_steps=4), optimizer, 10)
    expected = [lr * min(1, (i + 1) / 4) * (1 - i / 10) ** 0.9 for i in range(10) for lr in (0.01, 0.1)]
    assert got == pytest.approx(expected)


def test_a_held_group_has_rate_zero_then_follows_the_schedule():
    optimizer = two_groups()
    got = lrs_of(build_scheduler(optimizer, "constant", 6, {0: 3}), optimizer, 6)
    assert got[0::2] == [0, 0, 0, 0.01, 0.01, 0.01] and got[1::2] == [0.1] * 6


def test_parameter_groups_split_backbone_head_and_aux_head():
    from atrous import build_model

    model = build_model(tiny_config(None)["model"], pretrained_backbone=False)
    groups = {g["name"]: g for g in parameter_groups(model, 0.02, {"backbone": 0.1, "aux_head": 10})}
    assert {k: g["lr"] for k, g in groups.items()} == pytest.approx({"backbone": 0.002, "head": 0.02, "aux_head": 0.2})
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert ids["backbone"] == {id(p) for p in model.backbone.parameters()}
    assert ids["aux_head"] == {id(p) for p in model.aux_head.parameters()}
    assert ids["head"] == {id(p) for p in [*model.head.parameters(), *model.classifier.parameters()]}


@pytest.mark.parametrize("name", ["deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large"])
def test_torchvision_configs_carry_torchvisions_recipe(name):
    # references/segmentation: SGD, momentum 0.9, wd 1e-4 (1e-6 for MobileNetV3), lr 0.02 (0.01 for
    # MobileNetV3, the default), 30 epochs, poly 0.9, CE + 0.5 aux CE, aux classifier at lr x 10
    cfg = TrainConfig.from_mapping(load_config(f"torchvision/{name}")["train"])
    mobile = "mobilenet" in name
    assert cfg.optimizer == {"name": "sgd", "lr": 0.01 if mobile else 0.02, "momentum": 0.9,
                             "weight_decay": 1e-6 if mobile else 1e-4}
    assert cfg.max_epochs == 30 and cfg.loss == {"aux_weight": 0.5} and cfg.lr_multipliers == {"aux_head": 10.0}
    assert cfg.lr_schedule["name"] == "poly" and cfg.lr_schedule["power"] == 0.9
    assert cfg.lr_schedule["warmup_mode"] == "sequential" and cfg.lr_schedule["warmup_start_factor"] == 0.01


def test_fit_with_multipliers_and_a_frozen_backbone_warmup(tmp_path):
    # 2 epochs of 2 steps; the backbone is held for the first epoch, the aux head trains at 10x
    cfg = tiny_config(tmp_path, max_epochs=2, lr_multipliers={"aux_head": 10.0}, freeze_backbone_epochs=1,
                      lr_schedule={"name": "constant"})
    from test_training import Snapshot

    snapshots = []

    class EpochEnd(Snapshot):
        def on_train_epoch_end(self, trainer, pl_module):
            snapshots.append({k: v.clone() for k, v in pl_module.model.backbone.named_parameters()})

    start = EpochEnd()
    fit(cfg, callbacks=[start])
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    backbone = [float(r["lr-SGD/backbone"]) for r in rows if r.get("lr-SGD/backbone")]
    aux = [float(r["lr-SGD/aux_head"]) for r in rows if r.get("lr-SGD/aux_head")]
    head = [float(r["lr-SGD/head"]) for r in rows if r.get("lr-SGD/head")]
    assert backbone == [0, 0, 0.01, 0.01] and head == [0.01] * 4 and aux == pytest.approx([0.1] * 4)
    initial = {k[len("model.backbone."):]: v for k, v in start.state.items() if k.startswith("model.backbone.")}
    assert all(torch.equal(initial[k], v) for k, v in snapshots[0].items())  # held during the warm-up
    assert any(not torch.equal(initial[k], v) for k, v in snapshots[1].items())  # then trained
