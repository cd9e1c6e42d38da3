"""Images are read as they are displayed: EXIF orientation applied (images, not label
maps), 16-bit and other modes scaled to 8-bit RGB rather than clipped, oversized images refused
with how to raise the limit, in datasets and in ``atrous predict`` alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fixtures_user_data import write_folder
from helpers_predict import predict, random_image, tiny_checkpoint, tree
from PIL import Image

from atrous.config import ConfigError
from atrous.data.base import DatasetError
from atrous.data.build import build_dataset
from atrous.data.folder import FolderDataset
from atrous.data.image_files import IMAGE_EXTENSIONS, read_image, read_image_array, read_label_png
from atrous.evaluation.prediction_files import collect_inputs

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("images"))


def save_with_orientation(image: Image.Image, path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif)


# What a viewer shows for each EXIF orientation (EXIF 2.32, tag 0x0112), by NumPy alone:
# 2 mirrored, 3 upside down, 4 flipped, 5 transposed, 6 turned 90° clockwise, 7 transverse,
# 8 turned 90° counter-clockwise.
DISPLAYED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


# -- orientation ------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", sorted(DISPLAYED))
def test_exif_orientation_is_applied_as_a_viewer_shows_the_image(tmp_path, orientation):
    stored = np.random.default_rng(orientation).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    save_with_orientation(Image.fromarray(stored), tmp_path / "phone.png", orientation)
    assert np.array_equal(read_image_array(tmp_path / "phone.png"), DISPLAYED[orientation](stored))
    assert tuple(read_image(tmp_path / "phone.png").shape) == (3, *DISPLAYED[orientation](stored).shape[:2])


def test_label_maps_are_read_as_stored_whatever_their_exif(tmp_path):
    label = np.arange(60, dtype=np.uint8).reshape(6, 10)
    save_with_orientation(Image.fromarray(label), tmp_path / "mask.png", 6)
    assert np.array_equal(read_label_png(tmp_path / "mask.png"), label)


def test_predict_writes_outputs_in_the_displayed_orientation(checkpoint, tmp_path):
    stored = random_image(tmp_path / "plain.png", size=(16, 32))  # 32 wide, 16 high on disk
    save_with_orientation(Image.fromarray(stored), tmp_path / "in" / "phone.png", 6)
    Image.fromarray(np.rot90(stored, k=-1).copy()).save(tmp_path / "in" / "upright.png")
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(tmp_path / "out")) == 0
    with Image.open(tmp_path / "out" / "phone_labels.png") as png:
        assert png.size == (16, 32)  # (W, H) as displayed: portrait
    out = tree(tmp_path / "out")
    assert out["phone_labels.png"] == out["upright_labels.png"]  # the same picture, the same prediction


def test_a_dataset_size_mismatch_from_exif_says_so(tmp_path):
    root = write_folder(tmp_path / "data", n=2, size=(20, 30))
    image = root / "images" / "sample_0001.png"
    with Image.open(image) as img:
        pixels = np.array(img)
    save_with_orientation(Image.fromarray(pixels), image, 8)  # tagged: displayed 30x20
    dataset = FolderDataset(root)
    with pytest.raises(DatasetError) as err:
        dataset.load(1)
    message = str(err.value)
    assert "sample_0001.png" in message and "EXIF orientation tag (8)" in message and "(30, 20)" in message
    assert dataset.load(0)[0].shape == (3, 20, 30)


# -- bit depths and modes ---------------------------------------------------------------------

def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 64 * 48).astype(np.uint16).reshape(48, 64)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as img:
        assert img.mode == "I;16"
        assert (np.asarray(img.convert("RGB")) == 255).mean() > 0.99  # PIL's own conversion clips
    rgb = read_image_array(tmp_path / "deep.png")
    expected = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb, np.repeat(expected[..., None], 3, axis=2))
    assert (rgb == 255).mean() < 0.01


def test_16_bit_image_is_predicted_like_its_8_bit_version(checkpoint, tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (16, 24), dtype=np.uint8)
    (tmp_path / "in").mkdir()
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "in" / "deep.png")  # 8-bit values in 16 bits
    Image.fromarray(grey).save(tmp_path / "in" / "shallow.png")
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(tmp_path / "out")) == 0
    out = tree(tmp_path / "out")
    assert out["deep_labels.png"] == out["shallow_labels.png"] and out["deep_overlay.png"] == out["shallow_overlay.png"]


def _palette_with_transparency() -> tuple[Image.Image, np.ndarray]:
    index = np.array([[0, 1], [2, 1]], np.uint8)
    colours = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255]], np.uint8)
    img = Image.fromarray(index, "L").convert("P")
    img.putpalette(colours.flatten().tolist())
    img.info["transparency"] = bytes([0, 255, 255])  # index 0 transparent
    return img, colours[index]


def _cases() -> dict[str, tuple[Image.Image, np.ndarray]]:
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (4, 5), dtype=np.uint8)
    rgb = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    bits = grey > 127
    as_rgb = lambda g: np.repeat(g[..., None], 3, axis=2)  # noqa: E731
    deep = rng.integers(0, 65536, (4, 5)).astype(np.int32)
    unit = rng.random((4, 5)).astype(np.float32)
    return {
        "L": (Image.fromarray(grey), as_rgb(grey)),
        "1": (Image.fromarray(bits), as_rgb(bits.astype(np.uint8) * 255)),
        "LA": (Image.fromarray(np.dstack([grey, grey[::-1]]), "LA"), as_rgb(grey)),  # alpha dropped
        "RGBA": (Image.fromarray(np.dstack([rgb, grey]), "RGBA"), rgb),
        "P+transparency": _palette_with_transparency(),
        "CMYK": (Image.fromarray(np.dstack([255 - rgb, np.zeros((4, 5), np.uint8)]), "CMYK"), rgb),
        "I": (Image.fromarray(deep), as_rgb(np.round(deep * 255 / 65535).astype(np.uint8))),
        "F": (Image.fromarray(unit), as_rgb(np.round(unit * 255).astype(np.uint8))),
    }


@pytest.mark.parametrize("case", sorted(_cases()))
def test_every_mode_becomes_8_bit_rgb_by_scaling(tmp_path, case):
    img, expected = _cases()[case]
    path = tmp_path / ("image.tiff" if img.mode in ("I", "F", "CMYK") else "image.png")
    img.save(path)
    assert np.array_equal(read_image_array(path), expected)


def test_values_a_mode_cannot_represent_are_refused_with_a_message(tmp_path):
    Image.fromarray(np.full((4, 4), 3.5, np.float32)).save(tmp_path / "hdr.tiff")
    with pytest.raises(DatasetError, match=r"hdr\.tiff: floating-point image with values 3\.5\.\.3\.5"):
        read_image_array(tmp_path / "hdr.tiff")
    Image.fromarray(np.full((4, 4), -5, np.int32)).save(tmp_path / "signed.tiff")
    with pytest.raises(DatasetError, match=r"signed\.tiff: 32-bit integer image with values -5\.\.-5"):
        read_image_array(tmp_path / "signed.tiff")


# -- the pixel limit --------------------------------------------------------------------------

def test_oversized_images_are_refused_with_how_to_raise_the_limit(tmp_path, monkeypatch):
    random_image(tmp_path / "big.png", size=(20, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # as a 20000x20000 image meets the default
    with pytest.raises(DatasetError) as err:
        read_image_array(tmp_path / "big.png")
    message = str(err.value)
    assert "big.png: 30x20 = 600 pixels is more than the limit of 500" in message
    assert "--max-pixels 600" in message and "data.dataset.max_image_pixels: 600" in message
    assert read_image_array(tmp_path / "big.png", max_pixels=600).shape == (20, 30, 3)
    assert read_image_array(tmp_path / "big.png", max_pixels=0).shape == (20, 30, 3)  # no limit
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # below Pillow's own refusal (2x its limit)
    assert read_image_array(tmp_path / "big.png", max_pixels=1000).shape == (20, 30, 3)
    assert Image.MAX_IMAGE_PIXELS == 100  # Pillow's setting is restored
    with pytest.raises(DatasetError, match="max-pixels 600"):
        read_image_array(tmp_path / "big.png", max_pixels=599)


def test_predict_skips_an_oversized_image_and_max_pixels_raises_the_limit(checkpoint, tmp_path, capsys, monkeypatch):
    random_image(tmp_path / "in" / "small.png", size=(16, 16))
    random_image(tmp_path / "in" / "large.png", size=(16, 40), seed=1)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400)
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "large.png: 40x16 = 640 pixels is more than the limit of 400" in err and "--max-pixels 640" in err
    assert sorted(tree(tmp_path / "out")) == ["small_color.png", "small_labels.png", "small_overlay.png"]
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(tmp_path / "out2"), "--max-pixels", "640") == 0
    assert (tmp_path / "out2" / "large_labels.png").is_file()
    capsys.readouterr()
    assert predict(checkpoint, str(tmp_path / "in"), "--output", str(tmp_path / "out3"), "--max-pixels", "-1") == 2
    assert "whole number of pixels" in capsys.readouterr().err and not (tmp_path / "out3").exists()


def test_datasets_take_the_limit_from_the_config(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "data", n=2, size=(20, 30))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    default = build_dataset({"name": "folder", "root": str(root)}, {}, train=False)
    with pytest.raises(DatasetError, match="data.dataset.max_image_pixels: 600"):
        default.load(0)
    raised = build_dataset({"name": "folder", "root": str(root), "max_image_pixels": 600}, {}, train=False)
    assert raised.load(0)[0].shape == (3, 20, 30)
    with pytest.raises(ConfigError, match="max_image_pixels"):
        build_dataset({"name": "folder", "root": str(root), "max_image_pixels": "lots"}, {}, train=False)


@pytest.mark.parametrize("suffix", IMAGE_EXTENSIONS)
def test_every_image_extension_is_decoded_and_found_by_datasets_and_predict(tmp_path, suffix):
    """One list (``data/image_files.py``): each extension is a file the decoder reads, and both a
    ``folder`` dataset and ``atrous predict``'s input search pick it up."""
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert("L") if suffix == ".pgm" else Image.fromarray(rgb)
    write_folder(tmp_path, n=1, size=(20, 30))
    (tmp_path / "images" / "sample_0000.jpg").unlink()
    path = tmp_path / "images" / f"sample_0000{suffix}"
    image.save(path, **({"lossless": True} if suffix == ".webp" else {}))
    decoded = read_image_array(path)
    if suffix in (".jpg", ".jpeg"):  # lossy
        assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8
    else:
        assert np.array_equal(decoded, np.asarray(image.convert("RGB")))
    assert FolderDataset(tmp_path).image_path(0) == path
    assert [source.path for source in collect_inputs([tmp_path / "images"])] == [path]
