"""Your own data: the packaged folder configs train on a tiny folder in both layouts, a config
``base:``-ing the demo switches to a folder dataset with ``key: null``, and a flat folder's
train/val file lists are written into the run folder and read back on resume."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from fixtures_user_data import FOLDER_CLASSES, write_folder

from atrous.cli import main
from atrous.config import load_config

SIZE = (32, 40)
# Small sizes for a CPU test; everything else is the packaged config as it ships.
SMALL = [
    "model.backbone.pretrained=false",
    f"model.num_classes={len(FOLDER_CLASSES)}",
    "data.train.transforms.crop_size=[32, 32]",
    "data.batch_size=2",
    "data.num_workers=0",
    "train.max_epochs=1",
    "train.progress_bar=false",
    "train.accelerator=cpu",
]


@pytest.fixture(autouse=True)
def _quiet_lightning(caplog):
    caplog.set_level(logging.WARNING, logger="lightning.pytorch")


def fit(config: str | Path, out: Path, *overrides: str, resume: bool = False) -> int:
    return main(["fit", *(["--resume"] if resume else []), "--config", str(config), *SMALL,
                 f"train.output_dir={out}", *overrides])


@pytest.mark.parametrize("name", ["folder/denseaspp_resnet50", "folder/deeplabv3_resnet50", "folder/fcn_resnet50"])
def test_packaged_folder_configs_train_on_split_subfolders(tmp_path, name):
    root = tmp_path / "data"
    write_folder(root, n=4, size=SIZE, split="train", seed=1)
    write_folder(root, n=2, size=SIZE, split="val", mode="color", seed=2)
    assert fit(name, tmp_path / "run", f"data.dataset.root={root}") == 0
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert not (tmp_path / "run" / "splits").exists()  # nothing to partition


def test_a_packaged_folder_config_on_a_flat_folder_writes_and_reuses_its_file_lists(tmp_path, capsys):
    root = write_folder(tmp_path / "data", n=6, size=SIZE)
    name = "folder/fcn_resnet50"
    assert fit(name, tmp_path / "refused", f"data.dataset.root={root}") == 2  # neither layout option
    assert "data.dataset.val_fraction: 0.2" in capsys.readouterr().err

    out = tmp_path / "run"
    assert fit(name, out, f"data.dataset.root={root}", "data.dataset.val_fraction=0.34") == 0
    assert f"train/val file lists in {out}/splits" in capsys.readouterr().out
    lists = {split: (out / "splits" / f"{split}.txt").read_text().splitlines() for split in ("train", "val")}
    assert len(lists["val"]) == 2 and len(lists["train"]) == 4
    assert sorted(lists["train"] + lists["val"]) == sorted(p.relative_to(root).as_posix() for p in (root / "images").iterdir())

    # Images added later, and another seed, do not move images between the sets of the run.
    write_folder(tmp_path / "more", n=9, size=SIZE)
    for path in [*(tmp_path / "more").glob("*/sample_0008.*")]:
        path.rename(root / path.parent.name / path.name)
    assert fit(name, out, f"data.dataset.root={root}", "data.dataset.val_fraction=0.34", "data.dataset.split_seed=7",
               "train.max_epochs=2", resume=True) == 0
    assert {split: (out / "splits" / f"{split}.txt").read_text().splitlines() for split in ("train", "val")} == lists


def test_a_config_based_on_the_demo_switches_to_a_folder_with_null(tmp_path, capsys):
    """The demo's synthetic data has `image_size` and `length`, which a folder dataset refuses:
    another dataset `name` replaces `data.dataset`, and `length: null` removes the rest."""
    root = write_folder(tmp_path / "data", n=4, size=SIZE)
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({
        "base": "demo/denseaspp_resnet18_small",
        "model": {"num_classes": len(FOLDER_CLASSES)},
        "data": {"dataset": {"name": "folder", "root": str(root), "val_fraction": 0.5},
                 "train": {"length": None}, "val": {"length": None}},
    }))
    cfg = load_config(mine)
    assert cfg["data"]["val"] == {"split": "val"} and "length" not in cfg["data"]["train"]
    assert fit(mine, tmp_path / "run") == 0
    assert len((tmp_path / "run" / "splits" / "val.txt").read_text().splitlines()) == 2
    # Without the nulls, the folder dataset names the key it refuses.
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump({
        "base": "demo/denseaspp_resnet18_small", "model": {"num_classes": len(FOLDER_CLASSES)},
        "data": {"dataset": {"name": "folder", "root": str(root), "val_fraction": 0.5}}}))
    assert fit(tmp_path / "plain.yaml", tmp_path / "run2") == 2
    assert "unknown option(s) ['length'] for FolderDataset" in capsys.readouterr().err
