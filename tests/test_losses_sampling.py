"""Losses (ignore index, OHEM, aux), DeepLabv3 bootstrapping, deterministic sharded sampling,
mixed precision and gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from atrous.data.build import bootstrap
from atrous.data.synthetic import SyntheticStreets
from atrous.training.losses import SegmentationLoss
from atrous.training.sampling import EpochShardSampler
from atrous.training.schedules import poly_factor


def test_cross_entropy_ignores_unlabelled_pixels():
    logits = torch.randn(2, 4, 5, 6)
    target = torch.randint(0, 4, (2, 5, 6))
    target[:, 0] = 255
    expected = F.cross_entropy(logits[:, :, 1:], target[:, 1:])
    assert SegmentationLoss()(logits, target) == pytest.approx(float(expected))


def test_ohem_keeps_the_hard_pixels():
    # 10 pixels, class 0 true; p_true chosen per pixel.
    p = torch.tensor([0.95, 0.9, 0.8, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    logits = torch.stack([p.log(), (1 - p).log()]).view(1, 2, 1, 10)
    target = torch.zeros(1, 1, 10, dtype=torch.long)
    hard = -p[p < 0.7].log()
    loss = SegmentationLoss(ohem_thresh=0.7, ohem_min_kept=3)(logits, target)
    assert float(loss) == pytest.approx(float(hard.mean()), rel=1e-5)
    # fewer hard pixels than min_kept: the min_kept hardest are used
    loss = SegmentationLoss(ohem_thresh=0.7, ohem_min_kept=8)(logits, target)
    assert float(loss) == pytest.approx(float((-p.log()).sort(descending=True).values[:8].mean()), rel=1e-5)


def test_aux_loss_weight():
    logits, aux = torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    loss = SegmentationLoss(aux_weight=0.4)
    assert float(loss(logits, target, aux)) == pytest.approx(
        float(F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(aux, target)), rel=1e-6
    )


def test_poly_factor():
    assert poly_factor(0, 100) == 1.0 and poly_factor(100, 100) == 0.0
    assert poly_factor(50, 100, 0.9) == pytest.approx(0.5**0.9)


def test_bootstrap_duplicates_images_with_hard_classes():
    data = SyntheticStreets("train", length=30, image_size=(32, 64))
    with_bus = [i for i in range(30) if data.class_presence(i)[15]]
    assert 0 < len(with_bus) < 30
    boosted = bootstrap(data, ["bus"], repeats=2)
    assert len(boosted) == 30 + 2 * len(with_bus)
    with pytest.raises(ValueError, match="unknown class"):
        bootstrap(data, ["unicorn"])


def test_sharded_sampler_is_deterministic_and_partitions_the_epoch():
    full = list(EpochShardSampler(10, shuffle=True, seed=3))
    again = list(EpochShardSampler(10, shuffle=True, seed=3))
    assert full == again and sorted(i for _, i in full) == list(range(10))
    s = EpochShardSampler(10, shuffle=True, seed=3)
    s.set_epoch(1)
    assert [i for _, i in s] != [i for _, i in full]
    ranks = [list(EpochShardSampler(7, shuffle=False, rank=r, world_size=2)) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(7))  # no padding, no duplicates
    train_ranks = [list(EpochShardSampler(7, shuffle=True, rank=r, world_size=2, drop_last=True)) for r in range(2)]
    assert len(train_ranks[0]) == len(train_ranks[1]) == 3


def test_mixed_precision_and_gradient_accumulation(tmp_path):
    from test_training import tiny_config

    from atrous.training.runner import fit

    cfg = tiny_config(tmp_path, max_epochs=1, precision="bf16-mixed", accumulate_grad_batches=2)
    cfg["data"]["train"]["length"] = 16  # 4 batches → 2 optimizer steps
    metrics = fit(cfg)
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert not math.isnan(metrics["pixel_accuracy"])
