"""Users' own data: images/ + masks/ + classes.yaml, index and colour masks, splits, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_user_data import (
    FOLDER_CLASSES,
    FOLDER_COLORS,
    FOLDER_IGNORE_COLOR,
    folder_label,
    folder_stem,
    hash_tree,
    write_classes,
    write_folder,
)
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from atrous.data.base import DatasetError
from atrous.data.folder import FolderDataset, generated_palette, read_classes_file

SIZE = (20, 30)


def _classes(**overrides) -> dict:
    content = {"names": list(FOLDER_CLASSES), "colors": [list(c) for c in FOLDER_COLORS]}
    content.update(overrides)
    return {k: v for k, v in content.items() if v is not None}


# --- reading masks -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["index", "color"])
def test_masks_give_the_known_train_ids(tmp_path, mode):
    dataset = FolderDataset(write_folder(tmp_path, n=4, size=SIZE, mode=mode))
    assert len(dataset) == 4
    for i in range(4):
        image, mask = dataset.load(i)
        assert isinstance(image, tv_tensors.Image) and image.dtype == torch.uint8
        assert image.shape == (3, *SIZE)
        assert isinstance(mask, tv_tensors.Mask) and mask.dtype == torch.uint8
        np.testing.assert_array_equal(mask.numpy(), folder_label(i, SIZE))
        assert dataset.name(i) == folder_stem(i)


def test_index_and_colour_masks_agree_and_cover_every_kind(tmp_path):
    index_root = write_folder(tmp_path / "index", mode="index")
    colour_root = write_folder(tmp_path / "color", mode="color")
    modes = {Image.open(p).mode for p in sorted((index_root / "masks").iterdir())}
    assert modes == {"L", "P"}
    assert {Image.open(p).mode for p in (colour_root / "masks").iterdir()} == {"RGB"}
    by_index, by_colour = FolderDataset(index_root), FolderDataset(colour_root)
    for i in range(len(by_index)):
        mask = by_index.load(i)[1]
        torch.testing.assert_close(mask, by_colour.load(i)[1])
        assert set(mask.unique().tolist()) == {0, 1, 2, 3, 255}


def test_rgba_colour_masks_drop_alpha(tmp_path):
    root = write_folder(tmp_path, n=1, mode="color")
    mask_path = root / "masks" / "sample_0000.png"
    rgb = np.array(Image.open(mask_path))
    rgba = np.concatenate([rgb, np.full((*SIZE, 1), 255, dtype=np.uint8)], axis=-1)
    Image.fromarray(rgba).save(mask_path)
    np.testing.assert_array_equal(FolderDataset(root).load(0)[1].numpy(), folder_label(0, SIZE))


def test_image_suffixes_and_paths(tmp_path):
    dataset = FolderDataset(write_folder(tmp_path, n=3))
    assert [dataset.image_path(i).name for i in range(3)] == [
        "sample_0000.jpg", "sample_0001.png", "sample_0002.jpg",
    ]
    (tmp_path / "images" / "sample_0001.png").rename(tmp_path / "images" / "sample_0001.TIFF")
    (tmp_path / "images" / ".sample_0009.jpg").write_bytes(b"macOS resource fork")  # hidden: skipped
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    dataset = FolderDataset(tmp_path)
    assert len(dataset) == 3 and dataset.image_path(1).name == "sample_0001.TIFF"


# --- classes file --------------------------------------------------------------------------------


def test_classes_from_the_file(tmp_path):
    dataset = FolderDataset(write_folder(tmp_path))
    assert dataset.classes.names == FOLDER_CLASSES
    assert dataset.classes.num_classes == 4
    assert dataset.classes.ignore_index == 255
    assert dataset.classes.palette.tolist() == [list(c) for c in FOLDER_COLORS]
    assert dataset.classes_file == tmp_path / "classes.yaml"


def test_default_palette_when_no_colours(tmp_path):
    root = write_folder(tmp_path)
    write_classes(root / "classes.yaml", {"names": ["a", "b", "c"], "ignore_index": 255})
    (root / "masks" / "sample_0000.png").unlink()
    (root / "images" / "sample_0000.jpg").unlink()
    for i in range(1, 4):  # keep ids 0..2 and 255
        label = np.minimum(folder_label(i, SIZE), 2)
        label[folder_label(i, SIZE) == 255] = 255
        Image.fromarray(label.astype(np.uint8)).save(root / "masks" / f"{folder_stem(i)}.png")
    dataset = FolderDataset(root)
    np.testing.assert_array_equal(dataset.classes.palette, generated_palette(3))
    assert dataset.load(0)[1].max() == 255


def test_generated_palette_is_distinct_and_leaves_black_free():
    palette = generated_palette(1000)
    assert palette.shape == (1000, 3) and palette.dtype == np.uint8
    assert len(np.unique(palette, axis=0)) == 1000
    assert not (palette == 0).all(axis=1).any()
    np.testing.assert_array_equal(generated_palette(10), palette[:10])


def test_custom_ignore_index(tmp_path):
    root = write_folder(tmp_path, n=1)
    write_classes(root / "classes.yaml", _classes(ignore_index=4))
    label = folder_label(0, SIZE)
    label[label == 255] = 4
    Image.fromarray(label.astype(np.uint8)).save(root / "masks" / "sample_0000.png")
    dataset = FolderDataset(root)
    assert dataset.classes.ignore_index == 4
    np.testing.assert_array_equal(dataset.load(0)[1].numpy(), label)


@pytest.mark.parametrize("name", ["classes.json", "classes.yml"])
def test_other_classes_file_formats(tmp_path, name):
    root = write_folder(tmp_path, n=2, mode="color")
    (root / "classes.yaml").unlink()
    write_classes(root / name, _classes(ignore_color=list(FOLDER_IGNORE_COLOR)))
    dataset = FolderDataset(root)
    assert dataset.classes_file == root / name
    np.testing.assert_array_equal(dataset.load(1)[1].numpy(), folder_label(1, SIZE))


def test_explicit_classes_file(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", n=2)
    other = write_classes(tmp_path / "labels.json", _classes(names=["w", "x", "y", "z"]))
    assert FolderDataset(root, classes_file=other).classes.names == ("w", "x", "y", "z")
    write_classes(root / "my_classes.yaml", _classes(names=["p", "q", "r", "s"]))
    monkeypatch.chdir(tmp_path)  # a relative path not found here is looked up in root
    assert FolderDataset(root, classes_file="my_classes.yaml").classes.names == ("p", "q", "r", "s")


# --- splits --------------------------------------------------------------------------------------


def test_split_subfolders(tmp_path):
    write_folder(tmp_path, n=3, split="train", seed=1)
    write_folder(tmp_path, n=2, split="val", seed=2)
    train, val = FolderDataset(tmp_path, "train"), FolderDataset(tmp_path, split="val")
    assert (len(train), len(val)) == (3, 2)
    assert train.image_dir == tmp_path / "train" / "images"
    np.testing.assert_array_equal(val.load(1)[1].numpy(), folder_label(1, SIZE, seed=2))
    np.testing.assert_array_equal(train.load(1)[1].numpy(), folder_label(1, SIZE, seed=1))


def test_a_flat_folder_is_read_whole_without_a_split(tmp_path):
    write_folder(tmp_path, n=3)
    dataset = FolderDataset(tmp_path)
    assert dataset.image_dir == tmp_path / "images" and len(dataset) == 3 and dataset.partition is None


@pytest.mark.parametrize("split", ["train", "val"])
def test_a_flat_folder_without_val_fraction_is_refused_naming_both_options(tmp_path, split):
    """Never train = val: reading root/images for both would validate on the training images."""
    write_folder(tmp_path, n=3)
    with pytest.raises(DatasetError, match="would be the same images") as err:
        FolderDataset(tmp_path, split)
    message = str(err.value)
    assert f"{tmp_path}/train/{{images,masks}}" in message and "data.dataset.val_fraction: 0.2" in message


def test_val_fraction_partitions_a_flat_folder_by_seed(tmp_path):
    write_folder(tmp_path, n=10)
    train, val = (FolderDataset(tmp_path, s, val_fraction=0.3, split_seed=5) for s in ("train", "val"))
    # Independently: the images in name order, shuffled by the seed; the first 30% are val.
    files = sorted(f"images/{folder_stem(i)}.{'jpg' if i % 2 == 0 else 'png'}" for i in range(10))
    order = np.random.default_rng(5).permutation(10)
    assert [p.relative_to(tmp_path).as_posix() for p in val.images] == sorted(files[i] for i in order[:3])
    assert len(train) == 7 and set(train.stems).isdisjoint(val.stems)
    assert sorted(train.stems + val.stems) == [folder_stem(i) for i in range(10)]
    assert train.partition == val.partition and val.partition.val == tuple(sorted(files[i] for i in order[:3]))
    np.testing.assert_array_equal(val.load(0)[1].numpy(), folder_label(int(val.stems[0][-4:]), SIZE))
    again = FolderDataset(tmp_path, "val", val_fraction=0.3, split_seed=5)
    other = FolderDataset(tmp_path, "val", val_fraction=0.3, split_seed=6)
    assert again.stems == val.stems and other.stems != val.stems
    tiny = write_folder(tmp_path / "tiny", n=2)  # at least one image on each side
    assert len(FolderDataset(tiny, "val", val_fraction=0.01)) == len(FolderDataset(tiny, "train", val_fraction=0.99)) == 1


def test_split_lists_pin_the_partition(tmp_path):
    from atrous.data.folder_splits import write_partition

    root = write_folder(tmp_path / "ds", n=6)
    drawn = FolderDataset(root, "train", val_fraction=0.5).partition
    lists = write_partition(tmp_path / "run" / "splits", drawn)
    assert (lists / "val.txt").read_text().splitlines() == list(drawn.val)
    write_folder(tmp_path / "more", n=8)  # two images added later stay out of both sets
    for source in [*(tmp_path / "more").glob("*/sample_0006.*"), *(tmp_path / "more").glob("*/sample_0007.*")]:
        source.rename(root / source.parent.name / source.name)
    train = FolderDataset(root, "train", split_lists=lists)
    val = FolderDataset(root, "val", val_fraction=0.5, split_seed=99, split_lists=lists)  # the lists win
    assert train.partition == val.partition == drawn and len(train) + len(val) == 6
    (root / drawn.val[0]).unlink()
    (root / "masks" / f"{Path(drawn.val[0]).stem}.png").unlink()
    with pytest.raises(DatasetError, match=f"{lists}: lists 1 image.*{drawn.val[0]}"):
        FolderDataset(root, "val", split_lists=lists)
    with pytest.raises(DatasetError, match="train.txt: file list not found"):
        FolderDataset(root, "val", split_lists=tmp_path)


def test_partitions_apply_to_flat_folders_only(tmp_path):
    from atrous.config import ConfigError

    write_folder(tmp_path / "split", n=2, split="train")
    with pytest.raises(DatasetError, match="split subfolders .*remove them"):
        FolderDataset(tmp_path / "split", "train", val_fraction=0.2)
    write_folder(tmp_path / "flat", n=4)
    with pytest.raises(DatasetError, match="train and val only .*flat/test/images"):
        FolderDataset(tmp_path / "flat", "test", val_fraction=0.2)
    for bad in (0, 1, 1.5, "20%", True):
        with pytest.raises(ConfigError, match="val_fraction: .*between 0 and 1"):
            FolderDataset(tmp_path / "flat", "train", val_fraction=bad)


def test_missing_split_and_root_layout(tmp_path):
    write_folder(tmp_path, n=2, split="train")
    with pytest.raises(DatasetError, match="folder not found") as err:
        FolderDataset(tmp_path, "test")
    assert str(tmp_path / "images") in str(err.value)
    assert str(tmp_path / "test") in str(err.value)  # the hint mentions the split layout


# --- layout errors -------------------------------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found") as err:
        FolderDataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


@pytest.mark.parametrize("folder", ["images", "masks"])
def test_missing_images_or_masks_folder(tmp_path, folder):
    root = write_folder(tmp_path, n=1)
    for path in (root / folder).iterdir():
        path.unlink()
    (root / folder).rmdir()
    with pytest.raises(DatasetError, match="masks/0001.png") as err:  # the one-line example
        FolderDataset(root)
    assert str(root / folder) in str(err.value)


def test_no_images(tmp_path):
    root = write_folder(tmp_path, n=1)
    (root / "images" / "sample_0000.jpg").unlink()
    with pytest.raises(DatasetError, match="no images") as err:
        FolderDataset(root)
    assert str(root / "images") in str(err.value)


def test_images_without_masks_are_listed_up_to_five(tmp_path):
    root = write_folder(tmp_path, n=8)
    for i in range(7):
        (root / "masks" / f"{folder_stem(i)}.png").unlink()
    with pytest.raises(DatasetError, match="7 images without a mask") as err:
        FolderDataset(root)
    message = str(err.value)
    for i in range(5):
        assert str(root / "masks" / f"{folder_stem(i)}.png") in message
    assert str(root / "images" / "sample_0000.jpg") in message
    assert "sample_0005" not in message and "and 2 more" in message


def test_mask_without_image(tmp_path):
    root = write_folder(tmp_path, n=3)
    (root / "images" / "sample_0001.png").unlink()
    with pytest.raises(DatasetError, match="1 masks without an image") as err:
        FolderDataset(root)
    assert str(root / "masks" / "sample_0001.png") in str(err.value)


def test_non_png_mask_is_pointed_out(tmp_path):
    root = write_folder(tmp_path, n=2)
    (root / "masks" / "sample_0001.png").rename(root / "masks" / "sample_0001.jpg")
    with pytest.raises(DatasetError, match="masks must be PNG") as err:
        FolderDataset(root)
    assert str(root / "masks" / "sample_0001.jpg") in str(err.value)


def test_two_images_with_one_name(tmp_path):
    root = write_folder(tmp_path, n=1)
    Image.new("RGB", (SIZE[1], SIZE[0])).save(root / "images" / "sample_0000.png")
    with pytest.raises(DatasetError, match="share the name") as err:
        FolderDataset(root)
    assert str(root / "images" / "sample_0000.png") in str(err.value)


# --- classes file errors -------------------------------------------------------------------------


def test_classes_file_missing(tmp_path):
    root = write_folder(tmp_path, n=1)
    (root / "classes.yaml").unlink()
    with pytest.raises(DatasetError, match="classes file not found.*names: ") as err:
        FolderDataset(root)
    assert str(root / "classes.yaml") in str(err.value)
    with pytest.raises(DatasetError) as err:
        FolderDataset(root, classes_file=tmp_path / "other.yaml")
    assert str(tmp_path / "other.yaml") in str(err.value)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ({"colors": [[0, 0, 0]]}, "`names:` is missing"),
        ({"names": []}, "`names:` is missing or empty"),
        ({"names": "road"}, "`names:` is missing"),
        ({"names": ["a", True, 3]}, r"must be strings, got \[True, 3\]"),
        ({"names": ["a", "b", "a"]}, r"duplicate class names \['a'\]"),
        (_classes(colors=[[0, 0, 0]]), "`colors:` has 1 entries but `names:` has 4"),
        (_classes(colors=[[0, 0, 0], [1, 2], [3, 4, 5], [6, 7, 8]]), r"colors\[1\] \('road'\) is \[1, 2\]"),
        (_classes(colors=[[0, 0, 0], [1, 2, 3], [3, 4, 500], [6, 7, 8]]), r"colors\[2\].*0\.\.255"),
        (
            _classes(colors=[[0, 0, 0], [1, 2, 3], [0, 0, 0], [6, 7, 8]]),
            r"colors\[0\] \('background'\) and colors\[2\] \('car'\) are both \[0, 0, 0\]",
        ),
        (_classes(ignore_color=[0, 0, 142]), "ignore_color .* also the colour of 'car'"),
        (_classes(ignore_color="white"), "ignore_color is 'white'"),
        (_classes(ignore_index=2), "ignore_index.*got 2"),
        (_classes(ignore_index="255"), "ignore_index.*got '255'"),
        (_classes(colours=[[0, 0, 0]]), r"unknown keys \['colours'\]"),
        (["road", "car"], "must be a mapping"),
    ],
)
def test_malformed_classes_file(tmp_path, content, match):
    path = write_classes(tmp_path / "classes.yaml", content)
    with pytest.raises(DatasetError, match=match) as err:
        read_classes_file(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("name", "text"), [("classes.yaml", "names: [a, b\n"), ("classes.json", '{"names": ["a",]}')])
def test_unparsable_classes_file(tmp_path, name, text):
    root = write_folder(tmp_path, n=1)
    (root / "classes.yaml").unlink()
    (root / name).write_text(text)
    with pytest.raises(DatasetError, match="cannot parse") as err:
        FolderDataset(root)
    assert str(root / name) in str(err.value)


# --- mask content errors -------------------------------------------------------------------------


def test_index_values_beyond_the_classes(tmp_path):
    root = write_folder(tmp_path, n=2)
    label = folder_label(1, SIZE).astype(np.uint8)
    label[0, :2] = (4, 9)
    mask_path = root / "masks" / "sample_0001.png"
    Image.fromarray(label).save(mask_path)
    dataset = FolderDataset(root)
    dataset.load(0)
    with pytest.raises(DatasetError, match=r"mask values \[4, 9\].*4 classes") as err:
        dataset.load(1)
    assert str(mask_path) in str(err.value)


def test_label_map_reads_binary_0_255_masks(tmp_path):
    """0/255 masks (255 would be ignored): ``label_map: {255: 1}`` makes 255 the foreground class,
    in 8-bit and 16-bit PNGs; other values pass as they are."""
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    write_classes(root / "classes.yaml", {"names": ["background", "crack"]})
    raw = np.zeros(SIZE, np.uint8)
    raw[5:9, 3:20] = 255
    Image.fromarray(np.zeros((*SIZE, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(raw).save(root / "masks" / "a.png")
    expected = (raw == 255).astype(np.uint8)
    unmapped = FolderDataset(root).load(0)[1].numpy()
    assert set(np.unique(unmapped).tolist()) == {0, 255}  # the foreground would be ignored
    np.testing.assert_array_equal(FolderDataset(root, label_map={255: 1}).load(0)[1].numpy(), expected)
    Image.fromarray(raw.astype(np.uint16) * 257).save(root / "masks" / "a.png")  # 16-bit: 0 / 65535
    np.testing.assert_array_equal(FolderDataset(root, label_map={65535: 1}).load(0)[1].numpy(), expected)
    with pytest.raises(DatasetError, match=r"mask values \[65535\].*data.dataset.label_map \(e.g. \{65535: 1\}\)"):
        FolderDataset(root).load(0)


@pytest.mark.parametrize(("mapping", "match"), [({255: 2}, r"maps onto \[2\]"), ({"a": 1}, "non-negative integers"),
                                                ([255, 1], "non-negative integers")])
def test_label_map_errors_name_the_key(tmp_path, mapping, match):
    from atrous.config import ConfigError

    root = write_folder(tmp_path, n=1)
    write_classes(root / "classes.yaml", {"names": ["background", "crack"]})
    with pytest.raises(ConfigError, match=f"data.dataset.label_map: .*{match}"):
        FolderDataset(root, label_map=mapping)


def test_skip_unpaired_leaves_them_out_and_lists_them(tmp_path):
    root = write_folder(tmp_path, n=4)
    (root / "masks" / "sample_0001.png").unlink()
    (root / "images" / "sample_0002.jpg").unlink()
    dataset = FolderDataset(root, skip_unpaired=True)
    assert dataset.stems == ["sample_0000", "sample_0003"]
    assert dataset.unpaired == [(root / "images" / "sample_0001.png", f"no mask {root}/masks/sample_0001.png"),
                                (root / "masks" / "sample_0002.png", f"no image {root}/images/sample_0002.<ext>")]
    for stem in ("sample_0000", "sample_0003"):
        (root / "masks" / f"{stem}.png").unlink()
    with pytest.raises(DatasetError, match="no image has a mask"):
        FolderDataset(root, skip_unpaired=True)


def test_colour_mask_without_colours_in_the_classes_file(tmp_path):
    root = write_folder(tmp_path, n=1, mode="color")
    write_classes(root / "classes.yaml", {"names": list(FOLDER_CLASSES)})
    with pytest.raises(DatasetError, match="gives no `colors:`") as err:
        FolderDataset(root).load(0)
    assert str(root / "masks" / "sample_0000.png") in str(err.value)


def test_colours_not_in_the_palette_are_listed_up_to_five(tmp_path):
    root = write_folder(tmp_path, n=1, mode="color")
    mask_path = root / "masks" / "sample_0000.png"
    rgb = np.array(Image.open(mask_path))
    rgb[0, :7] = [(1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12), (13, 14, 15), (16, 17, 18), (19, 20, 21)]
    Image.fromarray(rgb).save(mask_path)
    with pytest.raises(DatasetError, match=r"\(1, 2, 3\), \(4, 5, 6\).*\(13, 14, 15\) and 2 more") as err:
        FolderDataset(root).load(0)
    assert str(mask_path) in str(err.value)
    assert "(16, 17, 18)" not in str(err.value)


def test_ignore_colour_is_required_to_be_declared(tmp_path):
    root = write_folder(tmp_path, n=1, mode="color")
    write_classes(root / "classes.yaml", _classes())  # no ignore_color: white pixels are unknown
    with pytest.raises(DatasetError, match=r"\(255, 255, 255\)"):
        FolderDataset(root).load(0)


def test_size_mismatch(tmp_path):
    root = write_folder(tmp_path, n=1)
    mask_path = root / "masks" / "sample_0000.png"
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(mask_path)
    with pytest.raises(DatasetError, match="pixel for pixel") as err:
        FolderDataset(root).load(0)
    assert str(mask_path) in str(err.value) and "sample_0000.jpg" in str(err.value)


@pytest.mark.parametrize("which", ["images/sample_0000.jpg", "masks/sample_0000.png"])
def test_corrupt_files(tmp_path, which):
    root = write_folder(tmp_path, n=1)
    (root / which).write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetError, match="cannot decode") as err:
        FolderDataset(root).load(0)
    assert str(root / which) in str(err.value)


# --- use -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["index", "color"])
def test_files_on_disk_are_not_modified(tmp_path, mode):
    root = write_folder(tmp_path, n=4, mode=mode, split="train")
    before = hash_tree(root)
    dataset = FolderDataset(root, "train")
    for i in range(len(dataset)):
        dataset[i]
    assert hash_tree(root) == before


def test_data_loader_with_transforms(tmp_path):
    def crop_to_float(image, mask):
        return image[:, :16, :16].float() / 255, mask[:16, :16]

    dataset = FolderDataset(write_folder(tmp_path, n=4, mode="color"), transforms=crop_to_float)
    batches = list(DataLoader(dataset, batch_size=3, num_workers=0))
    assert [b[0].shape for b in batches] == [(3, 3, 16, 16), (1, 3, 16, 16)]
    assert batches[0][1].dtype == torch.uint8
    np.testing.assert_array_equal(batches[1][1][0].numpy(), folder_label(3, SIZE)[:16, :16])
