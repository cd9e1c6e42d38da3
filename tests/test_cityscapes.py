"""Cityscapes on a tiny dataset in the official layout (tests/fixtures_data.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import labels as official_labels
from fixtures_data import EXTRA_CITIES, write_cityscapes
from PIL import Image
from torch.utils.data import DataLoader

from atrous.data.base import DatasetError
from atrous.data.cityscapes import Cityscapes, trainid_to_labelid
from atrous.data.palettes import CITYSCAPES_CLASSES


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return write_cityscapes(tmp_path_factory.mktemp("cityscapes"), coarse=True)


@pytest.fixture
def small(tmp_path) -> Path:
    """A fresh one-image-per-split dataset that a test may damage."""
    return write_cityscapes(tmp_path, cities=("aachen",), per_city=1, size=(8, 16))


def expected_train_ids(label_png: Path, void: int) -> np.ndarray:
    """Train ids computed straight from cityscapesScripts' list of labels, pixel by pixel."""
    raw = np.array(Image.open(label_png)).astype(np.int64)
    expected = np.full(raw.shape, -100)
    for label in official_labels:
        expected[raw == label.id] = label.trainId if label.trainId not in (255, -1) else void
    return expected


@pytest.mark.parametrize("split", ["train", "val"])
def test_label_ids_map_to_official_train_ids(root, split):
    dataset = Cityscapes(root, split)
    seen = set()
    for i in range(len(dataset)):
        image, mask = dataset.load(i)
        label_png = root / "gtFine" / split / dataset.name(i).split("_")[0] / f"{dataset.name(i)}_gtFine_labelIds.png"
        assert image.dtype == torch.uint8 and image.shape == (3, 32, 64)
        assert mask.dtype == torch.uint8 and mask.shape == (32, 64)
        np.testing.assert_array_equal(mask.numpy(), expected_train_ids(label_png, void=255))
        seen |= set(np.unique(np.array(Image.open(label_png))).tolist())
    assert seen == set(range(34))  # every label id of the table was exercised, void ids included
    assert dataset.classes.names == CITYSCAPES_CLASSES and dataset.classes.ignore_index == 255


def test_variant_20_makes_void_background(root):
    d19, d20 = Cityscapes(root, "val"), Cityscapes(root, "val", variant="20")
    assert d20.classes.num_classes == 20 and d20.classes.names[-1] == "background"
    assert d20.classes.names[:19] == d19.classes.names
    assert tuple(d20.classes.palette[19]) == (0, 0, 0) and d20.classes.ignore_index == 255
    for i in range(len(d19)):
        m19, m20 = d19.load(i)[1], d20.load(i)[1]
        assert (m20 != 255).all()
        assert torch.equal(m20, torch.where(m19 == 255, 19, m19))
        label_png = d20.label_path(i)
        np.testing.assert_array_equal(m20.numpy(), expected_train_ids(label_png, void=19))


def test_bad_variant_and_split(root):
    with pytest.raises(ValueError, match="variant"):
        Cityscapes(root, "val", variant="21")
    with pytest.raises(ValueError, match="split"):
        Cityscapes(root, "trainval")
    with pytest.raises(ValueError, match="coarse"):
        Cityscapes(root, "val", coarse=True)


def test_len_names_and_order(root):
    dataset = Cityscapes(root, "train")
    names = [dataset.name(i) for i in range(len(dataset))]
    assert names == [
        "aachen_000000_000019", "aachen_000000_000038", "bochum_000000_000019", "bochum_000000_000038",
    ]
    assert len(dataset) == 4
    assert dataset.image_path(2) == root / "leftImg8bit/train/bochum/bochum_000000_000019_leftImg8bit.png"
    assert names == [Cityscapes(root, "train").name(i) for i in range(4)]


def test_test_split_has_all_ignore_masks(root):
    dataset = Cityscapes(root, "test", variant="20")
    assert len(dataset) == 4
    for i in range(len(dataset)):
        image, mask = dataset.load(i)
        assert mask.shape == image.shape[-2:] and (mask == 255).all()
        assert not dataset.class_presence(i).any()


def test_test_split_needs_no_gtfine(small):
    shutil.rmtree(small / "gtFine" / "test")
    assert len(Cityscapes(small, "test")) == 1


def test_coarse_adds_train_extra(root):
    fine, both = Cityscapes(root, "train"), Cityscapes(root, "train", coarse=True)
    assert len(both) == len(fine) + 2 * len(EXTRA_CITIES)
    assert [both.name(i) for i in range(len(fine))] == [fine.name(i) for i in range(len(fine))]
    extra = [both.name(i) for i in range(len(fine), len(both))]
    assert extra == ["augsburg_000000_000019", "augsburg_000000_000038",
                     "bad-honnef_000000_000019", "bad-honnef_000000_000038"]
    last = len(both) - 1
    assert both.label_path(last) == root / "gtCoarse/train_extra/bad-honnef/bad-honnef_000000_000038_gtCoarse_labelIds.png"
    np.testing.assert_array_equal(both.load(last)[1].numpy(), expected_train_ids(both.label_path(last), void=255))


def test_trainid_to_labelid_inverts_the_table():
    from atrous.data.cityscapes import LABELID_TO_TRAINID

    assert trainid_to_labelid.shape == (19,)
    by_train_id = {label.trainId: label.id for label in official_labels if 0 <= label.trainId < 19}
    assert trainid_to_labelid.tolist() == [by_train_id[t] for t in range(19)]
    np.testing.assert_array_equal(LABELID_TO_TRAINID["19"][trainid_to_labelid], np.arange(19))


def test_class_presence_reads_labels(root):
    dataset = Cityscapes(root, "val", variant="20")
    presences = []
    for i in range(len(dataset)):
        mask = dataset.load(i)[1]
        presence = dataset.class_presence(i)
        assert presence.dtype == bool and presence.shape == (20,)
        np.testing.assert_array_equal(presence, np.isin(np.arange(20), mask.numpy()))
        presences.append(presence)
    assert presences[0].all() and not presences[1].all()  # the fixture's full and partial maps


def test_dataloader_with_transforms(root):
    def transforms(image, mask):
        return image.float() / 255, mask[:16, :32]

    dataset = Cityscapes(root, "train", coarse=True, transforms=transforms)
    batches = list(DataLoader(dataset, batch_size=3, num_workers=0))
    images, masks = batches[0]
    assert images.shape == (3, 3, 32, 64) and images.dtype == torch.float32
    assert masks.shape == (3, 16, 32) and masks.dtype == torch.uint8
    assert sum(len(b[0]) for b in batches) == len(dataset)


# ----------------------------------------------------------------------------- bad input


def label_of(root: Path, split: str = "train") -> Path:
    return next((root / "gtFine" / split / "aachen").glob("*_gtFine_labelIds.png"))


def image_of(root: Path, split: str = "train") -> Path:
    return next((root / "leftImg8bit" / split / "aachen").glob("*_leftImg8bit.png"))


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=re.escape(str(tmp_path / "nowhere"))):
        Cityscapes(tmp_path / "nowhere")


def test_missing_image_folder(small):
    shutil.rmtree(small / "leftImg8bit" / "val")
    with pytest.raises(DatasetError, match="leftImg8bit_trainvaltest.zip") as err:
        Cityscapes(small, "val")
    assert str(small / "leftImg8bit" / "val") in str(err.value)


def test_missing_label_folder(small):
    shutil.rmtree(small / "gtFine" / "val")
    with pytest.raises(DatasetError, match="gtFine_trainvaltest.zip") as err:
        Cityscapes(small, "val")
    assert str(small / "gtFine" / "val") in str(err.value)
    assert "<root>/gtFine/val/<city>/*_gtFine_labelIds.png" in str(err.value)


def test_missing_coarse_folders(small):
    with pytest.raises(DatasetError, match="leftImg8bit_trainextra.zip"):
        Cityscapes(small, "train", coarse=True)
    (small / "leftImg8bit" / "train_extra").mkdir()
    with pytest.raises(DatasetError, match="gtCoarse.zip"):
        Cityscapes(small, "train", coarse=True)


def test_image_without_label(small):
    label, image = label_of(small), image_of(small)
    label.unlink()
    with pytest.raises(DatasetError) as err:
        Cityscapes(small, "train")
    assert str(image) in str(err.value) and str(label) in str(err.value)


def test_empty_split(small):
    image_of(small, "val").unlink()
    with pytest.raises(DatasetError, match="no \\*_leftImg8bit.png images") as err:
        Cityscapes(small, "val")
    assert str(small / "leftImg8bit" / "val") in str(err.value)


def test_label_of_other_size(small):
    label = label_of(small)
    Image.fromarray(np.full((8, 15), 7, np.uint8)).save(label)
    dataset = Cityscapes(small, "train")  # pairing is fine: pixels are checked at load
    with pytest.raises(DatasetError, match="label map is") as err:
        dataset.load(0)
    assert str(label) in str(err.value) and str(image_of(small)) in str(err.value)


def test_unknown_label_values(small):
    label = label_of(small)
    raw = np.full((8, 16), 7, np.uint8)
    raw[0, :3] = (77, 34, 255)
    Image.fromarray(raw).save(label)
    dataset = Cityscapes(small, "train")
    for read in (dataset.load, dataset.class_presence):
        with pytest.raises(DatasetError, match=r"unknown label values \[34, 77, 255\]") as err:
            read(0)
        assert str(label) in str(err.value)


def test_colour_label_is_refused(small):
    label = label_of(small)
    Image.fromarray(np.zeros((8, 16, 3), np.uint8)).save(label)
    with pytest.raises(DatasetError, match="single-channel") as err:
        Cityscapes(small, "train").load(0)
    assert str(label) in str(err.value)


def test_corrupt_image(small):
    image = image_of(small)
    image.write_bytes(image.read_bytes()[:40])
    with pytest.raises(DatasetError, match="cannot decode") as err:
        Cityscapes(small, "train").load(0)
    assert str(image) in str(err.value)
