"""``atrous check-data``: every problem of the splits listed at once, exit 2; a clean dataset exits 0;
class pixel histograms (text, JSON, chart) against an independent count; 0/255 binary masks, colour
masks without colours and flat folders without a partition are named with the key that fixes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_user_data import (
    FOLDER_CLASSES,
    FOLDER_COLORS,
    folder_label,
    folder_stem,
    write_classes,
    write_folder,
)
from PIL import Image

from atrous.cli import main
from atrous.data.check import check_dataset, check_pair, scan_dataset
from atrous.data.folder import FolderDataset

SIZE = (20, 30)
MODEL = {"num_classes": 4, "backbone": {"name": "resnet18", "pretrained": False}, "head": {"name": "fcn"}}


def write_config(tmp_path: Path, root: Path, **dataset) -> Path:
    config = tmp_path / "folder.yaml"
    config.write_text(yaml.safe_dump({"model": MODEL, "data": {"dataset": {"name": "folder", "root": str(root), **dataset},
                                                                "num_workers": 0}}))
    return config


@pytest.fixture
def broken(tmp_path: Path) -> dict[str, Path]:
    """A flat folder dataset of 6 items, 4 of them broken in different ways, and an image
    without a mask."""
    root = write_folder(tmp_path / "ds", n=7, size=SIZE)
    (root / "masks" / f"{folder_stem(6)}.png").unlink()
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
    """A flat folder without val_fraction, an image without a mask and four broken items: all
    six listed; the missing mask and the layout no longer stop the scan."""
    config = write_config(tmp_path, broken["root"])
    assert main(["check-data", "--config", str(config), "--no-progress"]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert len(err) == 1 and "Traceback" not in captured.err
    assert err[0].startswith("atrous: error: 6 problems in the whole folder") and "(4 of 6 items" in err[0]
    out = captured.out
    for key, fragment in [("corrupt", "cannot decode this image"), ("size", "pixel for pixel"),
                          ("labels", "[7, 9, 200]"), ("mode", "'LA'")]:
        assert str(broken[key]) in out and fragment in out, (key, out)
    assert "would be the same images" in out and "data.dataset.val_fraction: 0.2" in out
    no_mask = broken["root"] / "images" / f"{folder_stem(6)}.jpg"
    assert f"{no_mask}\n" in out and "no mask" in out and "skip_unpaired: true" in out
    assert f"] {folder_stem(0)}" not in out and f"] {folder_stem(5)}" not in out  # the good items are not listed


def test_check_dataset_in_worker_processes_finds_the_same(broken):
    dataset = FolderDataset(broken["root"], skip_unpaired=True)
    serial, serial_counts = scan_dataset(dataset, progress=False)
    parallel, parallel_counts = scan_dataset(dataset, num_workers=2, progress=False)
    assert [p.index for p in serial] == [1, 2, 3, 4] and serial == parallel
    np.testing.assert_array_equal(serial_counts.pixels, parallel_counts.pixels)
    assert check_dataset(dataset, progress=False) == serial
    assert serial[0].files == (str(broken["corrupt"]), str(broken["root"] / "masks" / f"{folder_stem(1)}.png"))


def test_check_data_on_clean_splits_exits_0(tmp_path, capsys):
    root = write_folder(tmp_path / "ds", n=3, size=SIZE, split="train")
    write_folder(root, n=2, size=SIZE, split="val")
    assert main(["check-data", "--config", str(write_config(tmp_path, root)), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "data.train and data.val of" in captured.out and "all 5 items read" in captured.out and captured.err == ""
    flat = write_folder(tmp_path / "flat", n=5, size=SIZE)
    config = write_config(tmp_path, flat, val_fraction=0.4)
    assert main(["check-data", "--config", str(config), "--no-progress", "--split", "val"]) == 0
    assert "data.val of" in capsys.readouterr().out


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


def _expected_pixels(n: int, seed: int) -> tuple[np.ndarray, int]:
    """Pixels per class and ignored pixels of ``write_folder``'s masks, counted from the labels."""
    labels = np.stack([folder_label(i, SIZE, seed) for i in range(n)])
    return np.array([(labels == k).sum() for k in range(len(FOLDER_CLASSES))]), int((labels == 255).sum())


def test_class_pixels_per_split_in_text_json_and_a_chart(tmp_path, capsys):
    root = write_folder(tmp_path / "ds", n=3, size=SIZE, split="train", seed=1)
    write_folder(root, n=2, size=SIZE, split="val", mode="color", seed=2)
    for i in range(2):  # no "person" (3) in val: painted as background
        val_mask = root / "val" / "masks" / f"{folder_stem(i)}.png"
        rgb = np.array(Image.open(val_mask))
        rgb[(rgb == np.array(FOLDER_COLORS[3], np.uint8)).all(-1)] = FOLDER_COLORS[0]
        Image.fromarray(rgb).save(val_mask)
    out = tmp_path / "report"
    config = write_config(tmp_path, root)
    assert main(["check-data", "--config", str(config), "--no-progress", "--output", str(out)]) == 0
    text = capsys.readouterr().out
    report = json.loads((out / "class_pixels.json").read_text())
    assert report["classes"] == list(FOLDER_CLASSES) and set(report["splits"]) == {"train", "val"}
    train_pixels, train_ignored = _expected_pixels(3, 1)
    train = report["splits"]["train"]
    assert [train["pixels"][n] for n in FOLDER_CLASSES] == train_pixels.tolist()
    assert train["ignored_pixels"] == train_ignored and train["items"] == 3 and train["missing_classes"] == []
    assert train["images_with_class"] == dict.fromkeys(FOLDER_CLASSES, 3)
    assert sum(train["share_of_labelled_pixels"].values()) == pytest.approx(1.0)
    val = report["splits"]["val"]
    labels = np.stack([folder_label(i, SIZE, 2) for i in range(2)])
    labels[labels == 3] = 0
    assert [val["pixels"][n] for n in FOLDER_CLASSES] == [int((labels == k).sum()) for k in range(4)]
    assert val["missing_classes"] == ["person"] and val["images_with_class"]["person"] == 0
    assert "data.val: no pixel of person" in text
    share = 100 * train_pixels[1] / train_pixels.sum()
    assert f"{share:6.2f}% in    3 images" in text  # the table's road cell of data.train
    with Image.open(out / "class_pixels.png") as chart:
        assert chart.size[0] > 300 and chart.size[1] > 300
    assert main(["check-data", "--config", str(config), "--no-progress", "--output", str(out)]) == 2
    assert "already holds class_pixels.json, class_pixels.png; pass --overwrite" in capsys.readouterr().err
    first = (out / "class_pixels.json").read_bytes()
    assert main(["check-data", "--config", str(config), "--no-progress", "--output", str(out), "--overwrite"]) == 0
    (aside,) = out.glob("replaced-*")
    assert (aside / "class_pixels.json").read_bytes() == first and (out / "class_pixels.json").is_file()


def _binary_dataset(root: Path, n: int = 3) -> Path:
    """Masks stored as 0 / 255 (background / crack), as many tools export them."""
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            mask = np.zeros(SIZE, np.uint8)
            mask[2 + i : 8 + i, 4:20] = 255
            Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(root / split / "images" / f"{i}.png")
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    write_classes(root / "classes.yaml", {"names": ["background", "crack"]})
    return root


def test_binary_0_255_masks_are_a_problem_that_names_label_map(tmp_path, capsys):
    config = write_config(tmp_path, _binary_dataset(tmp_path / "ds"))
    assert main(["check-data", "--config", str(config), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "look like 0/255 binary masks" in captured.out and "data.dataset.label_map: {255: 1}" in captured.out
    assert "2 problems in data.train and data.val" in captured.err
    assert main(["check-data", "--config", str(config), "--no-progress", "data.dataset.label_map={255: 1}"]) == 0
    out = capsys.readouterr().out
    assert "no pixel of" not in out and "all 6 items read" in out


def test_colour_masks_without_colours_name_the_classes_key(tmp_path, capsys):
    root = write_folder(tmp_path / "ds", n=2, size=SIZE, mode="color", split="train")
    write_folder(root, n=1, size=SIZE, mode="color", split="val")
    write_classes(root / "classes.yaml", {"names": list(FOLDER_CLASSES)})  # no colors:
    assert main(["check-data", "--config", str(write_config(tmp_path, root)), "--no-progress"]) == 2
    out = capsys.readouterr().out
    assert out.count("colour (RGB) mask holding 5 colours ([0, 0, 0], [0, 0, 142]") == 3
    assert "add `colors:` there" in out


def test_a_partitioned_flat_folder_lists_a_file_without_partner_once(tmp_path, capsys):
    root = write_folder(tmp_path / "ds", n=5, size=SIZE)
    (root / "images" / f"{folder_stem(4)}.jpg").unlink()  # its mask stays
    config = write_config(tmp_path, root, val_fraction=0.25)
    assert main(["check-data", "--config", str(config), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.out.count(f"no image {root}/images/{folder_stem(4)}.<ext>") == 1
    assert "atrous: error: 1 problem in data.train and data.val" in captured.err
    assert main(["check-data", "--config", str(config), "--no-progress", "data.dataset.skip_unpaired=true"]) == 0
    assert capsys.readouterr().out.count("left out (skip_unpaired)") == 1
