"""ADE20K SceneParsing: layout, the 0 → ignore / v → v − 1 mapping, class names, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from fixtures_user_data import ade20k_raw_label, hash_tree, write_ade20k
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from atrous.data.ade20k import ADE20K, ADE20K_CLASSES, ADE20K_PALETTE
from atrous.data.base import DatasetError

SIZE = (24, 32)


@pytest.fixture
def ade_root(tmp_path):
    """The folder that holds ADEChallengeData2016."""
    write_ade20k(tmp_path, size=SIZE)
    return tmp_path


def _expected_train_ids(raw: np.ndarray) -> np.ndarray:
    return np.where(raw == 0, 255, raw.astype(np.int64) - 1)


@pytest.mark.parametrize(("split", "count", "prefix"), [("train", 3, "ADE_train"), ("val", 2, "ADE_val")])
def test_values_map_to_train_ids_exactly(ade_root, split, count, prefix):
    dataset = ADE20K(ade_root, split)
    assert len(dataset) == count
    for i in range(count):
        image, mask = dataset.load(i)
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert image.shape == (3, *SIZE)
        assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8
        raw = ade20k_raw_label(split, i, SIZE)
        assert {0, 1, 150} <= set(np.unique(raw).tolist())  # the fixture covers the range's edges
        np.testing.assert_array_equal(mask.numpy(), _expected_train_ids(raw))
        assert dataset.name(i) == f"{prefix}_{i + 1:08d}"
        assert dataset.image_path(i).name == f"{prefix}_{i + 1:08d}.jpg"


def test_value_edges(ade_root):
    mask = ADE20K(ade_root).load(0)[1]
    assert mask[0, 0] == 0  # value 1, wall
    assert mask[0, -1] == 149  # value 150, flag
    assert mask[-1, -1] == 255  # value 0, other → ignored


def test_root_may_be_the_dataset_folder_or_its_parent(ade_root):
    from_parent = ADE20K(ade_root, "val")
    from_folder = ADE20K(ade_root / "ADEChallengeData2016", "val")
    assert [from_parent.name(i) for i in range(2)] == [from_folder.name(i) for i in range(2)]
    torch.testing.assert_close(from_parent.load(1)[1], from_folder.load(1)[1])


def test_class_names_and_palette():
    classes = ADE20K.classes
    assert classes.num_classes == 150 == len(ADE20K_CLASSES) == len(set(ADE20K_CLASSES))
    assert classes.ignore_index == 255
    # objectInfo150.csv: Idx 1 wall, 13 person, 21 car, 150 flag (train id = Idx − 1)
    assert (classes.names[0], classes.names[12], classes.names[20], classes.names[149]) == (
        "wall", "person", "car", "flag",
    )
    assert classes.palette.shape == (150, 3) and classes.palette.dtype == np.uint8
    assert len({tuple(c) for c in classes.palette.tolist()}) == 150
    assert not (classes.palette == 0).all(axis=1).any()  # black is left for ignored pixels
    assert classes.palette[0].tolist() == [128, 0, 0]  # VOC colour map entry 1, pinned
    assert not ADE20K_PALETTE.flags.writeable


def test_unknown_split(ade_root):
    with pytest.raises(ValueError, match="'test'"):
        ADE20K(ade_root, "test")


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="ADEChallengeData2016.zip") as err:
        ADE20K(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


def test_wrong_layout_says_the_expected_one(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="ADEChallengeData2016.zip") as err:
        ADE20K(tmp_path)
    message = str(err.value)
    assert str(tmp_path) in message
    assert "annotations/training/ADE_train_00000001.png" in message


def test_missing_split_folder(ade_root):
    missing = ade_root / "ADEChallengeData2016" / "annotations" / "validation"
    shutil.rmtree(missing)
    ADE20K(ade_root, "train")  # the other split is still fine
    with pytest.raises(DatasetError, match="ADEChallengeData2016.zip") as err:
        ADE20K(ade_root, "val")
    assert str(missing) in str(err.value)


def test_no_images(ade_root):
    for path in (ade_root / "ADEChallengeData2016" / "images" / "validation").iterdir():
        path.unlink()
    with pytest.raises(DatasetError, match="no .jpg images") as err:
        ADE20K(ade_root, "val")
    assert "images/validation" in str(err.value)


def test_image_without_annotation_names_both(ade_root):
    base = ade_root / "ADEChallengeData2016"
    annotation = base / "annotations" / "training" / "ADE_train_00000002.png"
    annotation.unlink()
    with pytest.raises(DatasetError) as err:
        ADE20K(ade_root)
    message = str(err.value)
    assert str(annotation) in message
    assert str(base / "images" / "training" / "ADE_train_00000002.jpg") in message
    assert "1 of 3" in message


def test_size_mismatch(ade_root):
    annotation = ade_root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    Image.fromarray(np.ones((10, 10), dtype=np.uint8)).save(annotation)
    dataset = ADE20K(ade_root)
    with pytest.raises(DatasetError, match="pixel for pixel") as err:
        dataset.load(0)
    assert str(annotation) in str(err.value)
    assert "ADE_train_00000001.jpg" in str(err.value)


def test_values_beyond_150(ade_root):
    annotation = ade_root / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    raw = ade20k_raw_label("val", 1, SIZE)
    raw[0, 0], raw[0, 1] = 151, 200
    Image.fromarray(raw).save(annotation)
    dataset = ADE20K(ade_root, "val")
    dataset.load(0)
    with pytest.raises(DatasetError, match=r"\[151, 200\]") as err:
        dataset.load(1)
    assert str(annotation) in str(err.value)
    assert "0..150" in str(err.value)


def test_colour_annotation_is_refused(ade_root):
    annotation = ade_root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000003.png"
    Image.fromarray(np.zeros((*SIZE, 3), dtype=np.uint8)).save(annotation)
    with pytest.raises(DatasetError, match="grey PNGs") as err:
        ADE20K(ade_root).load(2)
    assert str(annotation) in str(err.value)


def test_corrupt_image(ade_root):
    image = ade_root / "ADEChallengeData2016" / "images" / "training" / "ADE_train_00000001.jpg"
    image.write_bytes(b"not a jpeg at all")
    with pytest.raises(DatasetError, match="cannot decode") as err:
        ADE20K(ade_root).load(0)
    assert str(image) in str(err.value)


def test_files_on_disk_are_not_modified(ade_root):
    before = hash_tree(ade_root)
    for split in ("train", "val"):
        dataset = ADE20K(ade_root, split)
        for i in range(len(dataset)):
            dataset[i]
    assert hash_tree(ade_root) == before


def test_data_loader_with_transforms(ade_root):
    def to_float(image, mask):
        return image.float() / 255, mask

    dataset = ADE20K(ade_root, "train", transforms=to_float)
    images, masks = next(iter(DataLoader(dataset, batch_size=2, num_workers=0)))
    assert images.shape == (2, 3, *SIZE) and images.dtype == torch.float32
    assert masks.shape == (2, *SIZE) and masks.dtype == torch.uint8
    assert images.max() <= 1.0
    np.testing.assert_array_equal(masks[1].numpy(), _expected_train_ids(ade20k_raw_label("train", 1, SIZE)))
