"""The loss terms of ``train.loss`` against independent computations: hand-worked cases, plain
formulas in float64, and segmentation_models_pytorch's losses as an oracle; every term blind to
ignored pixels; weighted sums, class weights from pixel frequencies, and the config's checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import segmentation_models_pytorch.losses as smp
import torch
import torch.nn.functional as F

from atrous.config import ConfigError
from atrous.training.class_weights import weights_from_counts
from atrous.training.losses import SegmentationLoss, loss_options
from atrous.training.train_section import TrainConfig

IGNORE = 255


def batch(seed: int = 0, k: int = 4, ignore_share: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 logits (2, k, 5, 6) and int64 labels with about ``ignore_share`` ignored pixels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k, 5, 6, generator=g, dtype=torch.float64) * 2
    target = torch.randint(0, k, (2, 5, 6), generator=g)
    target[torch.rand(2, 5, 6, generator=g) < ignore_share] = IGNORE
    return logits, target


def loss_of(terms, logits, target, **options):
    return SegmentationLoss(IGNORE, terms=terms, **options).double()(logits, target)


# -- against smp ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_dice_equals_smp(seed):
    logits, target = batch(seed)
    oracle = smp.DiceLoss("multiclass", from_logits=True, ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(loss_of([{"name": "dice"}], logits, target), oracle)


@pytest.mark.parametrize(("alpha", "beta", "gamma"), [(0.3, 0.7, 1.0), (0.7, 0.3, 1.5)])
def test_tversky_equals_smp(alpha, beta, gamma):
    logits, target = batch(2)
    oracle = smp.TverskyLoss("multiclass", from_logits=True, ignore_index=IGNORE, alpha=alpha, beta=beta,
                             gamma=gamma)(logits, target)
    term = {"name": "tversky", "alpha": alpha, "beta": beta, "gamma": gamma}
    torch.testing.assert_close(loss_of([term], logits, target), oracle)


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_softmax_equals_smp(per_image):
    logits, target = batch(3)
    logits = logits.float()  # smp's Lovász mixes float32 into a float64 dot product
    oracle = smp.LovaszLoss("multiclass", per_image=per_image, ignore_index=IGNORE)(logits, target)
    loss = SegmentationLoss(IGNORE, terms=[{"name": "lovasz", "per_image": per_image}])(logits, target)
    torch.testing.assert_close(loss, oracle)


# -- hand-worked and plain formulas ----------------------------------------------------------------
def test_dice_by_hand():
    # two pixels, two classes, probabilities (0.8, 0.2) and (0.4, 0.6), labels 0 and 1, one ignored
    p = torch.tensor([[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], dtype=torch.float64)
    logits = p.log().T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, IGNORE]]])
    dice0 = 2 * 0.8 / (0.8 + 0.4 + 1)  # class 0: TP 0.8, Σp 1.2, Σt 1
    dice1 = 2 * 0.6 / (0.2 + 0.6 + 1)
    expected = 1 - (dice0 + dice1) / 2
    torch.testing.assert_close(loss_of([{"name": "dice"}], logits, target), torch.tensor(expected, dtype=torch.float64))


def test_focal_is_cross_entropy_at_gamma_zero_and_down_weights_easy_pixels():
    logits, target = batch(4)
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(loss_of([{"name": "focal", "gamma": 0.0}], logits, target), ce)
    # γ = 2 by the formula, pixel by pixel
    valid = target != IGNORE
    p_t = logits.softmax(1).gather(1, target.clamp(max=3).unsqueeze(1)).squeeze(1)[valid]
    expected = (-(1 - p_t) ** 2 * p_t.log()).mean()
    torch.testing.assert_close(loss_of([{"name": "focal", "gamma": 2.0}], logits, target), expected)


def test_class_weights_weigh_ce_and_focal_alike():
    logits, target = batch(5)
    weights = [1.0, 2.0, 0.5, 3.0]
    valid = target != IGNORE
    nll = F.cross_entropy(logits, target.clamp(max=3), reduction="none")[valid]
    expected = (nll * torch.tensor(weights, dtype=torch.float64)[target[valid]]).sum() / valid.sum()
    torch.testing.assert_close(loss_of(None, logits, target, class_weights=weights), expected)
    focal = loss_of([{"name": "focal", "gamma": 0.0}], logits, target, class_weights=weights)
    torch.testing.assert_close(focal, expected)


@pytest.mark.parametrize("name", ["ce", "focal", "dice", "tversky", "lovasz"])
def test_ignored_pixels_change_nothing(name):
    logits, target = batch(6)
    changed = logits.clone()
    # nonsense logits where nothing is labelled ...
    changed.transpose(0, 1)[:, target == IGNORE] = torch.randn(4, int((target == IGNORE).sum()), dtype=torch.float64) * 9
    assert (target == IGNORE).any()
    torch.testing.assert_close(loss_of([{"name": name}], changed, target), loss_of([{"name": name}], logits, target))
    # ... and a batch without any labelled pixel gives 0 and a gradient, not NaN
    x = logits.clone().requires_grad_()
    value = loss_of([{"name": name}], x, torch.full_like(target, IGNORE))
    value.backward()
    assert value.item() == 0 and torch.isfinite(x.grad).all()


def test_weighted_sum_and_aux_weight():
    logits, target = batch(7)
    aux = logits.flip(1)
    terms = [{"name": "ce", "weight": 1}, {"name": "dice", "weight": 0.5}]

    def plain(x):
        return F.cross_entropy(x, target, ignore_index=IGNORE) + 0.5 * smp.DiceLoss(
            "multiclass", ignore_index=IGNORE)(x, target)

    loss = SegmentationLoss(IGNORE, terms=terms, aux_weight=0.4).double()
    torch.testing.assert_close(loss(logits, target, aux), plain(logits) + 0.4 * plain(aux))


def test_ohem_still_keeps_the_hardest_pixels():
    logits, target = batch(8)
    valid = target != IGNORE
    losses = F.cross_entropy(logits, target.clamp(max=3), reduction="none")[valid]
    hardest = losses.topk(5).values.mean()
    loss = loss_of([{"name": "ce"}], logits, target, ohem_thresh=1e-9, ohem_min_kept=5)  # no pixel is that hard
    torch.testing.assert_close(loss, hardest)


def test_the_single_loss_syntax_keeps_its_meaning():
    logits, target = batch(9)
    old = SegmentationLoss(IGNORE, **loss_options({"aux_weight": 0.4})).double()
    torch.testing.assert_close(old(logits, target), F.cross_entropy(logits, target, ignore_index=IGNORE))
    assert loss_options([{"name": "dice"}]) == {"terms": [{"name": "dice"}]}
    assert "class_weights" in SegmentationLoss(IGNORE, class_weights=[1.0, 2.0]).state_dict()  # as before


# -- class weights from pixel frequencies ---------------------------------------------------------
def test_median_frequency_and_enet_weights_by_hand():
    # two images, three classes; class 2 never appears
    counts = np.array([[30, 10, 0], [0, 60, 0]])
    # median frequency: f0 = 30 / 40 (only image 0 has class 0), f1 = 70 / 100
    f0, f1 = 30 / 40, 70 / 100
    median = (f0 + f1) / 2
    assert weights_from_counts(counts, "median_frequency") == pytest.approx([median / f0, median / f1, 0.0])
    assert weights_from_counts(counts, "auto") == weights_from_counts(counts, "median_frequency")
    # ENet: 1 / ln(1.02 + p), p the share of all labelled pixels
    assert weights_from_counts(counts, "enet") == pytest.approx([1 / math.log(1.02 + 0.3), 1 / math.log(1.02 + 0.7), 0.0])


# -- config checks -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("loss", "message"), [
    ([{"name": "dise"}], "unknown loss 'dise' .*did you mean 'dice'"),
    ([{"name": "focal", "gama": 2}], "did you mean 'gamma'"),
    ({"terms": []}, "non-empty list"),
    ({"class_weights": "median"}, "unknown mode 'median'"),
    ({"class_weights": [1, -1]}, "must be >= 0"),
    ([{"name": "ce", "weight": -1}], "must be >= 0"),
])
def test_a_wrong_loss_is_one_clear_error(loss, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_mapping({"loss": loss})


def test_auto_class_weights_are_computed_once_and_kept_in_the_run_folder(tmp_path, monkeypatch):
    import json

    from test_training import Crash, tiny_config

    from atrous.data.build import build_dataset
    from atrous.training import class_weights
    from atrous.training.runner import fit

    cfg = tiny_config(tmp_path, max_epochs=2, loss={"terms": [{"name": "ce"}, {"name": "dice", "weight": 0.5}],
                                                    "class_weights": "auto"})
    with pytest.raises(SystemExit):
        fit(cfg, callbacks=[Crash(at_step=3)])
    stored = json.loads((tmp_path / "class_weights.json").read_text())
    # an independent count over the untransformed training masks
    train = build_dataset(cfg["data"]["dataset"], cfg["data"]["train"], train=True)
    counts = np.stack([np.bincount(train.load(i)[1].numpy().ravel(), minlength=256)[:19] for i in range(len(train))])
    assert stored["pixel_counts"] == counts.sum(0).tolist() and stored["mode"] == "auto"
    assert stored["weights"] == pytest.approx(weights_from_counts(counts, "median_frequency"))
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["config"]["train"]["loss"]["class_weights"] == stored["weights"]

    def no_second_scan(*args, **kwargs):
        raise AssertionError("the weights were computed again on resume")

    monkeypatch.setattr(class_weights, "pixel_counts", no_second_scan)
    fit(cfg, resume=True)  # reads class_weights.json


def test_class_weights_of_the_wrong_length_are_one_clear_error(tmp_path):
    from test_training import tiny_config

    from atrous.training.runner import fit

    with pytest.raises(ConfigError, match="3 weights for 19 classes"):
        fit(tiny_config(tmp_path, loss={"class_weights": [1.0, 2.0, 3.0]}))
