"""Runs of any length leave ``checkpoints/best.ckpt``, ``last.ckpt`` at the final step and a
``metrics.json`` pointing at best: a run shorter than one epoch, one whose
``check_val_every_n_epoch`` is beyond its last epoch, and one with ``limit_val_batches=0``
(no validation: best = the final weights), whose checkpoint ``atrous validate`` then scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from atrous.cli import main
from atrous.training.runner import BEST_RULES, fit

LENGTH, BATCH, SIZE = 8, 2, (32, 64)  # 4 steps per epoch


def config(out: Path, **train) -> dict:
    return {
        "model": {
            "num_classes": 19,
            "backbone": {"name": "resnet18", "output_stride": 16, "num_stages": 3, "pretrained": False},
            "head": {"name": "denseaspp", "atrous_rates": [3, 6], "bottleneck_channels": 16, "growth_channels": 8},
        },
        "data": {
            "dataset": {"name": "synthetic", "image_size": list(SIZE)},
            "train": {"split": "train", "length": LENGTH},
            "val": {"split": "val", "length": 2},
            "batch_size": BATCH,
            "num_workers": 0,
        },
        "train": {"max_epochs": 1, "optimizer": {"name": "sgd", "lr": 0.01}, "output_dir": str(out),
                  "progress_bar": False, "accelerator": "cpu", **train},
    }


def _checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def _same_weights(a: dict, b: dict) -> bool:
    return a["state_dict"].keys() == b["state_dict"].keys() and all(
        torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


@pytest.mark.parametrize("train, final_step, validated", [
    ({"max_steps": 2}, 2, False),                                  # shorter than one epoch
    ({"check_val_every_n_epoch": 2}, 4, False),                    # validation due after the last epoch
    ({"limit_val_batches": 0}, 4, False),                          # no validation at all
    ({"max_epochs": 3, "check_val_every_n_epoch": 2}, 12, True),   # validated at epoch 2, not after 3
    ({}, 4, True),                                                 # the usual run
], ids=["max_steps=2", "check_val_every_n_epoch=2", "limit_val_batches=0", "validated-then-not", "usual"])
def test_every_run_leaves_best_last_and_metrics(tmp_path, train, final_step, validated):
    metrics = fit(config(tmp_path, **train))
    checkpoints = tmp_path / "checkpoints"
    best, last = _checkpoint(checkpoints / "best.ckpt"), _checkpoint(checkpoints / "last.ckpt")
    assert last["global_step"] == final_step
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["checkpoint"] == str(checkpoints / "best.ckpt")
    assert saved["best_checkpoint"] == BEST_RULES[validated] == metrics["best_checkpoint"]
    assert saved["num_pixels"] == 2 * SIZE[0] * SIZE[1]  # the whole val split, even with limit_val_batches=0
    if not validated:
        assert _same_weights(best, last)
    if train.get("max_epochs") == 3:
        assert best["global_step"] == 8 and not _same_weights(best, last)


def test_validate_scores_a_run_that_never_validated(tmp_path, capsys):
    cfg = config(tmp_path / "run", limit_val_batches=0)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["fit", "--config", str(tmp_path / "c.yaml")]) == 0
    assert "best.ckpt holds the final weights" in capsys.readouterr().out
    assert main(["validate", "--checkpoint", str(tmp_path / "run" / "checkpoints" / "best.ckpt"),
                 "--output", str(tmp_path / "v")]) == 0
    scored = json.loads((tmp_path / "v" / "metrics.json").read_text())
    fitted = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert scored["num_pixels"] == 2 * SIZE[0] * SIZE[1]
    assert scored["mIoU"] == pytest.approx(fitted["mIoU"])


def test_a_resumed_run_that_never_validated_ends_with_its_final_weights_as_best(tmp_path):
    fit(config(tmp_path, max_steps=2, limit_val_batches=0))
    # a checkpoint written when training ended counts its epoch as done: the next epoch follows
    fit(config(tmp_path, max_epochs=2, limit_val_batches=0), resume=True)
    best, last = _checkpoint(tmp_path / "checkpoints" / "best.ckpt"), _checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6 and _same_weights(best, last)
    assert json.loads((tmp_path / "metrics.json").read_text())["best_checkpoint"] == BEST_RULES[False]


def test_a_resumed_run_keeps_the_best_of_its_first_attempt(tmp_path):
    fit(config(tmp_path))                                            # validated after its epoch: step 4
    fit(config(tmp_path, max_epochs=2, limit_val_batches=0), resume=True)  # no validation after
    assert _checkpoint(tmp_path / "checkpoints" / "best.ckpt")["global_step"] == 4
    assert _checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 8
    assert json.loads((tmp_path / "metrics.json").read_text())["best_checkpoint"] == BEST_RULES[True]
