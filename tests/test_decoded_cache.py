"""The decoded-frame cache (``data.dataset.cache_dir``): the same samples as decoding, a changed
or corrupt entry decoded again, atomic entries under concurrent writers, a full disk survived."""

from __future__ import annotations

import errno
import multiprocessing
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_cityscapes
from PIL import Image

from atrous.config import ConfigError
from atrous.data import image_files
from atrous.data.build import build_dataset
from atrous.data.decoded_cache import DecodedCache
from atrous.data.image_files import ImageTooLargeError, read_image, read_label_png

AUGMENT = {"scale_range": [0.5, 2.0], "crop_size": [24, 48], "hflip": True, "color_jitter": 0.2}


@pytest.fixture()
def root(tmp_path) -> Path:
    return write_cityscapes(tmp_path / "cityscapes", per_city=2, size=(48, 96), splits=("train",))


def cityscapes(root: Path, cache_dir: Path | None = None, **extra):
    dataset = {"name": "cityscapes", "root": str(root), **extra}
    if cache_dir is not None:
        dataset["cache_dir"] = str(cache_dir)
    return build_dataset(dataset, {"split": "train", "transforms": AUGMENT}, train=True)


def first_image(root: Path) -> Path:
    return sorted((root / "leftImg8bit" / "train").rglob("*_leftImg8bit.png"))[0]


def entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.npy"))


def samples(dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for i in range(len(dataset)):
        torch.manual_seed(i)
        out.append(dataset[i])
    return out


def assert_same(first, second) -> None:
    for (image, mask), (other_image, other_mask) in zip(first, second, strict=True):
        assert torch.equal(image, other_image) and torch.equal(mask, other_mask)


def test_cached_samples_equal_decoded_ones_and_come_from_the_cache(root, tmp_path, monkeypatch):
    plain, cached = cityscapes(root), cityscapes(root, tmp_path / "cache")
    expected, decoded = samples(plain), plain.load(0)[0]
    assert_same(samples(cached), expected)  # first pass: decoded and stored
    assert len(entries(tmp_path / "cache")) == 2 * len(plain)  # an image and a label map each

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(image_files, "read_image_array", no_decoding)
    monkeypatch.setattr(image_files, "_decode_label", no_decoding)
    assert_same(samples(cached), expected)  # second pass: read back from the cache
    image, _ = cached.load(0)
    assert image.dtype == torch.uint8 and image.shape == (3, 48, 96)
    image[:, 0, 0] = 7  # writable (copy-on-write): the entry keeps the decoded pixels
    assert torch.equal(cached.load(0)[0], decoded)


def test_a_changed_source_is_decoded_again_and_its_old_entry_removed(root, tmp_path):
    cache = DecodedCache(tmp_path / "cache")
    path = first_image(root)
    before = read_image(path, cache=cache)
    changed = 255 - before.permute(1, 2, 0).numpy()
    Image.fromarray(changed).save(path)
    os.utime(path, ns=(os.stat(path).st_atime_ns, os.stat(path).st_mtime_ns + 10**9))
    after = read_image(path, cache=cache)
    assert np.array_equal(after.permute(1, 2, 0).numpy(), changed)
    assert len(entries(tmp_path / "cache")) == 1


@pytest.mark.parametrize("damage", [b"", b"\x93NUMPY garbage", None, b"foreign"])
def test_a_corrupt_entry_is_decoded_again_and_rewritten(root, tmp_path, damage):
    cache = DecodedCache(tmp_path / "cache")
    label = sorted((root / "gtFine" / "train").rglob("*_labelIds.png"))[0]
    expected = read_label_png(label)
    read_label_png(label, cache=cache)
    (entry,) = entries(tmp_path / "cache")
    data = entry.read_bytes()
    if damage == b"foreign":
        np.save(entry, np.arange(5))
    else:
        entry.write_bytes(data[: len(data) // 2] if damage is None else damage)  # truncated, empty, garbage
    assert np.array_equal(read_label_png(label, cache=cache), expected)
    assert np.array_equal(np.load(entry), expected)


def _load_all(args: tuple[str, str]) -> list[bytes]:
    root, cache_dir = args
    dataset = cityscapes(Path(root), Path(cache_dir))
    return [b"".join(t.numpy().tobytes() for t in dataset.load(i)) for i in range(len(dataset))]


def test_concurrent_writers_leave_complete_entries(root, tmp_path):
    expected = _load_all((str(root), str(tmp_path / "alone")))
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        results = pool.map(_load_all, [(str(root), str(tmp_path / "cache"))] * 8)
    assert all(result == expected for result in results)
    assert len(entries(tmp_path / "cache")) == 8 and not list((tmp_path / "cache").rglob("*.tmp"))
    assert all(np.load(entry).size for entry in entries(tmp_path / "cache"))
    assert _load_all((str(root), str(tmp_path / "cache"))) == expected


def test_a_full_disk_decodes_without_caching_after_one_warning(root, tmp_path, monkeypatch):
    plain, cached = cityscapes(root), cityscapes(root, tmp_path / "cache")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "save", full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert_same(samples(cached), samples(plain))
    messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(messages) == 1 and "No space left on device" in messages[0] and "without caching" in messages[0]
    assert not cached.decoded_cache.writable
    assert not entries(tmp_path / "cache") and not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_cached_image_over_the_pixel_limit_is_refused(root, tmp_path):
    cache = DecodedCache(tmp_path / "cache")
    path = first_image(root)
    read_image(path, cache=cache)
    with pytest.raises(ImageTooLargeError, match="max_image_pixels"):
        read_image(path, max_pixels=100, cache=cache)


def test_cache_dir_config_errors_name_the_key(root, tmp_path):
    with pytest.raises(ConfigError, match="data.dataset.cache_dir: a folder"):
        build_dataset({"name": "cityscapes", "root": str(root), "cache_dir": 3}, {"split": "train"}, train=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"cannot create {blocker}"):
        cityscapes(root, blocker / "cache")
