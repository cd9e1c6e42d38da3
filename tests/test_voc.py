"""PASCAL VOC 2012 (+ SBD train_aug) on a tiny dataset in the true layout (tests/fixtures_data.py)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_voc
from PIL import Image
from torch.utils.data import DataLoader

from atrous.data.base import DatasetError
from atrous.data.voc import VOC_PALETTE, VOCSegmentation, resolve_root, voc_palette


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    return write_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture
def small(tmp_path) -> Path:
    """A fresh dataset that a test may damage."""
    return write_voc(tmp_path, n=2, size=(20, 24))


def test_root_may_be_voc2012_vocdevkit_or_its_parent(voc, tmp_path):
    for root in (voc, voc.parent, voc.parent.parent):
        assert resolve_root(root) == voc
        assert len(VOCSegmentation(root, "val")) == 3
    flat = tmp_path / "VOC2012"
    shutil.copytree(voc, flat)
    assert resolve_root(tmp_path) == flat
    with pytest.raises(DatasetError, match="no PASCAL VOC 2012 found") as err:
        VOCSegmentation(tmp_path / "VOC2012" / "JPEGImages")
    assert str(tmp_path / "VOC2012" / "JPEGImages") in str(err.value)


def test_palette_labels_are_read_as_indices_with_borders(voc):
    dataset = VOCSegmentation(voc, "trainval")
    assert len(dataset) == 6
    for i in range(len(dataset)):
        image, mask = dataset.load(i)
        png = Image.open(voc / "SegmentationClass" / f"{dataset.name(i)}.png")
        assert png.mode == "P"  # the fixture wrote a true palette PNG …
        np.testing.assert_array_equal(mask.numpy(), np.array(png))  # … read as its indices
        assert image.dtype == torch.uint8 and image.shape == (3, 40, 50)
        assert mask.dtype == torch.uint8 and mask.shape == (40, 50)
        values = set(mask.unique().tolist())
        assert 255 in values and values - {255} <= set(range(21)) and len(values) >= 3


def test_train_aug_deeplab_lines(voc):
    dataset = VOCSegmentation(voc)  # default split: train_aug
    lines = (voc / "ImageSets/Segmentation/train_aug.txt").read_text().splitlines()
    assert lines[0].startswith("/JPEGImages/") and " /SegmentationClassAug/" in lines[0]
    assert [dataset.name(i) for i in range(len(dataset))] == [
        "2007_000000", "2008_000001", "2009_000002", "2008_100000", "2008_100001", "2008_100002",
    ]
    assert dataset.image_path(4) == voc / "JPEGImages/2008_100001.jpg"
    for i in range(len(dataset)):
        png = Image.open(voc / "SegmentationClassAug" / f"{dataset.name(i)}.png")
        assert png.mode == "L"
        np.testing.assert_array_equal(dataset.load(i)[1].numpy(), np.array(png))


def test_plain_id_lines_equal_deeplab_lines(small):
    lists = small / "ImageSets/Segmentation"
    deeplab = VOCSegmentation(small, "train_aug")
    ids = [deeplab.name(i) for i in range(len(deeplab))]
    (lists / "train_aug.txt").write_text("\n".join(ids) + "\n\n")
    plain = VOCSegmentation(small, "train_aug")
    assert [plain.name(i) for i in range(len(plain))] == ids
    assert torch.equal(plain.load(1)[1], deeplab.load(1)[1])


def test_official_splits(voc):
    train, val = VOCSegmentation(voc, "train"), VOCSegmentation(voc, "val")
    trainval = VOCSegmentation(voc, "trainval")
    names = [[d.name(i) for i in range(len(d))] for d in (train, val, trainval)]
    assert names[0] + names[1] == names[2]
    assert train.label_path(0) == voc / "SegmentationClass/2007_000000.png"
    with pytest.raises(ValueError, match="split"):
        VOCSegmentation(voc, "test")


def test_classes_and_palette():
    classes = VOCSegmentation.classes
    assert classes.num_classes == 21 and classes.ignore_index == 255
    assert classes.names[0] == "background" and classes.names[15] == "person"
    assert classes.names[-1] == "tvmonitor"
    # colours of VOCdevkit's colour map, as listed in its documentation
    assert VOC_PALETTE[:4].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]]
    assert VOC_PALETTE[15].tolist() == [192, 128, 128] and VOC_PALETTE[20].tolist() == [0, 64, 128]
    assert voc_palette()[255].tolist() == [224, 224, 192]  # the border colour
    assert len(set(map(tuple, VOC_PALETTE.tolist()))) == 21


def test_class_presence(voc):
    dataset = VOCSegmentation(voc, "train_aug")
    presences = []
    for i in range(len(dataset)):
        presence = dataset.class_presence(i)
        assert presence.dtype == bool and presence.shape == (21,)
        np.testing.assert_array_equal(presence, np.isin(np.arange(21), dataset.load(i)[1].numpy()))
        presences.append(presence)
    assert all(p[0] and p.sum() >= 2 for p in presences)
    assert len({p.tobytes() for p in presences}) > 1


def test_dataloader_with_transforms(voc):
    def transforms(image, mask):
        return image.float() / 255, mask[:32, :32]

    dataset = VOCSegmentation(voc, "train_aug", transforms=transforms)
    images, masks = next(iter(DataLoader(dataset, batch_size=4, num_workers=0)))
    assert images.shape == (4, 3, 40, 50) and images.dtype == torch.float32
    assert masks.shape == (4, 32, 32) and masks.dtype == torch.uint8


# ----------------------------------------------------------------------------- bad input


def test_missing_list_file(small):
    (small / "ImageSets/Segmentation/train_aug.txt").unlink()
    with pytest.raises(DatasetError, match="SBD") as err:
        VOCSegmentation(small, "train_aug")
    assert str(small / "ImageSets/Segmentation/train_aug.txt") in str(err.value)


def test_missing_label_folder(small):
    shutil.rmtree(small / "SegmentationClassAug")
    with pytest.raises(DatasetError, match=re.escape(str(small / "SegmentationClassAug"))):
        VOCSegmentation(small, "train_aug")


def test_unparsable_list_line(small):
    (small / "ImageSets/Segmentation/val.txt").write_text("2007_000001\na b c\n")
    with pytest.raises(DatasetError, match=r"val.txt:2: cannot parse 'a b c'"):
        VOCSegmentation(small, "val")


def test_empty_list(small):
    (small / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(DatasetError, match="empty") as err:
        VOCSegmentation(small, "val")
    assert str(small / "ImageSets/Segmentation/val.txt") in str(err.value)


def test_image_without_label(small):
    label = small / "SegmentationClass/2007_000000.png"
    label.unlink()
    with pytest.raises(DatasetError) as err:
        VOCSegmentation(small, "train")
    assert str(label) in str(err.value) and str(small / "JPEGImages/2007_000000.jpg") in str(err.value)


def test_listed_image_missing(small):
    (small / "JPEGImages/2007_000000.jpg").unlink()
    with pytest.raises(DatasetError, match=re.escape(str(small / "JPEGImages/2007_000000.jpg"))):
        VOCSegmentation(small, "train")


def test_label_of_other_size(small):
    label = small / "SegmentationClassAug/2007_000000.png"
    Image.fromarray(np.zeros((20, 23), np.uint8)).save(label)
    dataset = VOCSegmentation(small, "train_aug")
    with pytest.raises(DatasetError, match="label map is") as err:
        dataset.load(0)
    assert str(label) in str(err.value)


def test_label_values_beyond_classes(small):
    label = small / "SegmentationClass/2007_000000.png"
    raw = np.array(Image.open(label))
    raw[0, :2] = (21, 254)
    png = Image.fromarray(raw)
    png.putpalette(Image.open(label).getpalette())
    png.save(label)
    dataset = VOCSegmentation(small, "train")
    for read in (dataset.load, dataset.class_presence):
        with pytest.raises(DatasetError, match=r"unknown label values \[21, 254\]") as err:
            read(0)
        assert str(label) in str(err.value)


def test_rgb_label_is_refused(small):
    label = small / "SegmentationClass/2007_000000.png"
    Image.open(label).convert("RGB").save(label)
    with pytest.raises(DatasetError, match="RGB") as err:
        VOCSegmentation(small, "train").load(0)
    assert str(label) in str(err.value)


def test_corrupt_image(small):
    image = small / "JPEGImages/2007_000000.jpg"
    image.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="cannot decode") as err:
        VOCSegmentation(small, "train").load(0)
    assert str(image) in str(err.value)
