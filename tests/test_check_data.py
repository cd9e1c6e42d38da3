"""``atrous check-data``: every problem of a split listed at once, exit 2; a clean split exits 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_user_data import folder_stem, write_folder
from PIL import Image

from atrous.cli import main
from atrous.data.check import check_dataset, check_pair
from atrous.data.folder import FolderDataset

SIZE = (20, 30)
MODEL = {"num_classes": 4, "backbone": {"name": "resnet18", "pretrained": False}, "head": {"name": "fcn"}}


def write_config(tmp_path: Path, root: Path) -> Path:
    config = tmp_path / "folder.yaml"
    config.write_text(yaml.safe_dump({"model": MODEL, "data": {"dataset": {"name": "folder", "root": str(root)},
                                                                "num_workers": 0}}))
    return config


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, Path]:
    """A folder dataset of 6 items, 4 of them broken in different ways."""
    root = write_folder(tmp_path / "ds", n=6, size=SIZE)
    images, masks = root / "images", root / "masks"
    bad = {
        "corrupt": images / f"{folder_stem(1)}.png",
        "size": masks / f"{folder_stem(2)}.png",
        "labels": masks / f"{folder_stem(3)}.png",
        "mode": masks / f"{folder_stem(4)}.png",
    }
    bad["corrupt"].write_bytes(b"\x89PNG truncated")
    Image.fromarray(np.zeros((SIZE[0] + 1, SIZE[1]), np.uint8)).save(bad["size"])
    label = np.zeros(SIZE, np.uint8)
    label[0, :3] = [7, 9, 200]  # not class ids (4 classes, ignore 255)
    Image.fromarray(label).save(bad["labels"])
    Image.fromarray(np.zeros((*SIZE, 2), np.uint8), mode="LA").save(bad["mode"])
    return {"root": root, **bad}


def test_check_data_lists_every_problem_and_exits_2(broken, tmp_path, capsys):
    config = write_config(tmp_path, broken["root"])
    assert main(["check-data", "--config", str(config), "--no-progress"]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith("atrous: error: 4 of 6 items") and "Traceback" not in captured.err
    out = captured.out
    for key, fragment in [("corrupt", "cannot decode this image"), ("size", "pixel for pixel"),
                          ("labels", "[7, 9, 200]"), ("mode", "'LA'")]:
        assert str(broken[key]) in out and fragment in out, (key, out)
    assert folder_stem(0) not in out and folder_stem(5) not in out  # the good items are not listed


def test_check_dataset_in_worker_processes_finds_the_same(broken):
    dataset = FolderDataset(broken["root"])
    serial = check_dataset(dataset, progress=False)
    parallel = check_dataset(dataset, num_workers=2, progress=False)
    assert [p.index for p in serial] == [1, 2, 3, 4] and serial == parallel
    assert serial[0].files == (str(broken["corrupt"]), str(broken["root"] / "masks" / f"{folder_stem(1)}.png"))


def test_check_data_on_a_clean_split_exits_0(tmp_path, capsys):
    root = write_folder(tmp_path / "ds", n=3, size=SIZE)
    assert main(["check-data", "--config", str(write_config(tmp_path, root)), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "all 3 items read" in captured.out and captured.err == ""


def test_check_data_on_a_missing_dataset_is_one_line(tmp_path, capsys):
    assert main(["check-data", "--config", str(write_config(tmp_path, tmp_path / "nowhere"))]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "nowhere" in err[0]


def test_check_pair_contract():
    import torch

    image = torch.zeros(3, 4, 5, dtype=torch.uint8)
    assert check_pair(image, torch.zeros(4, 5, dtype=torch.int64), 4, 255) is None
    assert "uint8" in check_pair(image.float(), torch.zeros(4, 5, dtype=torch.int64), 4, 255)
    assert "(4, 6)" in check_pair(image, torch.zeros(4, 6, dtype=torch.int64), 4, 255)
    assert "[4]" in check_pair(image, torch.full((4, 5), 4), 4, 255)
    assert check_pair(image, torch.full((4, 5), 255), 4, 255) is None
