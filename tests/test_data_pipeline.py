"""The fast data pipeline: uint8 label look-ups, uint8 masks end to end, crop-first random scaling.

The crop-first transform is checked against an independent reference built straight from
torchvision: ``RandomScale`` (resize the whole frame) then ``v2.RandomCrop(pad_if_needed)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_data import write_cityscapes
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from atrous.data.base import DatasetError
from atrous.data.cityscapes import LABELID_TO_TRAINID, Cityscapes
from atrous.data.label_maps import LabelLookup
from atrous.data.synthetic import SyntheticStreets
from atrous.data.transforms import RandomScale, RandomScaleCrop, build_transforms
from atrous.evaluation.metrics import SegmentationMetrics
from atrous.training.losses import SegmentationLoss
from atrous.training.sampling import SeededItems

IGNORE = 255
FRAME = (96, 192)
STREETS = SyntheticStreets("train", length=3, image_size=FRAME)


def reference(scale_range, crop_size, ignore_index=IGNORE) -> v2.Compose:
    """Resize the whole frame, then crop, with torchvision's own crop."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
    return v2.Compose([RandomScale(scale_range), v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill)])


def run(transform, pair, seed: int):
    """``transform(*pair)`` after ``torch.manual_seed(seed)``, and the generator state after it."""
    torch.manual_seed(seed)
    out = transform(*pair)
    return out, torch.get_rng_state()


@pytest.mark.parametrize("crop_size", [(48, 96), (64, 80), (120, 250)])
def test_crop_first_makes_the_same_draws_and_the_same_crops_as_resize_whole_then_crop(crop_size):
    differences, changed = [], []
    for seed in range(12):
        pair = STREETS.load(seed % 3)
        (image, mask), state = run(RandomScaleCrop((0.5, 2.0), crop_size), pair, seed)
        (ref_image, ref_mask), ref_state = run(reference((0.5, 2.0), crop_size), pair, seed)
        assert torch.equal(state, ref_state), "a different number or order of random draws"
        assert image.shape == ref_image.shape == (3, *crop_size) and mask.shape == ref_mask.shape == crop_size
        assert image.dtype == torch.uint8 and mask.dtype == torch.uint8
        # padding is the same region, 0 in the image and ignore in the mask (the source has no 255)
        padded = ref_mask == IGNORE
        assert torch.equal(mask == IGNORE, padded)
        assert (image[:, padded] == 0).all()
        differences.append(float((image.float() - ref_image.float()).abs().mean()))
        changed.append(float((mask != ref_mask).float().mean()))
    # The source box is rounded to whole source pixels: a sub-pixel shift, seen on edges and on
    # these frames' pixel noise (mean 2.1–3.7 grey levels, 0.8–2.9 % of mask pixels here; at
    # 1024×2048, 1.8 and 0.2 %). Shifting the box by one more source pixel gives 5.3–8.3.
    assert np.mean(differences) < 4.5, f"mean absolute difference {np.mean(differences):.2f} grey levels"
    assert np.mean(changed) < 0.04, f"mask pixels changed: {np.mean(changed):.3f} on average"


def test_crop_first_is_bit_identical_when_the_crop_holds_the_whole_scaled_frame():
    pair = STREETS.load(0)
    for seed in range(5):  # scaled frame ≤ 48×96 ≤ crop: resizing the region is resizing the whole
        (image, mask), _ = run(RandomScaleCrop((0.3, 0.5), (60, 100)), pair, seed)
        (ref_image, ref_mask), _ = run(reference((0.3, 0.5), (60, 100)), pair, seed)
        assert torch.equal(image, ref_image) and torch.equal(mask, ref_mask)


@pytest.mark.parametrize("frame", [(7, 13), (33, 50), (100, 37)])
def test_crop_first_shapes_padding_and_label_values(frame):
    generator = torch.Generator().manual_seed(1)
    mask = tv_tensors.Mask(torch.tensor([0, 3, 7, 19])[torch.randint(0, 4, frame, generator=generator)])
    image = tv_tensors.Image(torch.randint(1, 256, (3, *frame), dtype=torch.uint8, generator=generator))
    transform = RandomScaleCrop((0.5, 2.0), (24, 40), ignore_index=77)
    for seed in range(8):
        (out_image, out_mask), _ = run(transform, (image, mask), seed)
        assert out_image.shape == (3, 24, 40) and out_mask.shape == (24, 40) and out_mask.dtype == torch.int64
        assert set(out_mask.unique().tolist()) <= {0, 3, 7, 19, 77}
        padded = out_mask == 77
        assert (out_image[:, padded] == 0).all() and (out_image[:, ~padded] > 0).all()


def test_build_transforms_scales_and_crops_in_one_step_and_scales_alone_without_a_crop():
    options = {"train": True, "scale_range": (0.5, 2.0), "normalize": "imagenet"}
    steps = build_transforms(**options, crop_size=(48, 96)).transforms
    assert any(isinstance(t, RandomScaleCrop) for t in steps)
    assert not any(isinstance(t, (RandomScale, v2.RandomCrop)) for t in steps)
    alone = build_transforms(**options).transforms
    assert any(isinstance(t, RandomScale) for t in alone) and not any(isinstance(t, RandomScaleCrop) for t in alone)


def test_augmentation_is_a_function_of_seed_epoch_and_index():
    dataset = SyntheticStreets("train", length=3, image_size=FRAME, transforms=build_transforms(
        train=True, scale_range=(0.5, 2.0), crop_size=(48, 96), hflip=True, color_jitter=0.2))
    items = SeededItems(dataset, seed=5)
    first, again, other = items[(1, 2)], items[(1, 2)], items[(2, 2)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    assert first[1].dtype == torch.uint8 and first[1].shape == (48, 96)


# -- uint8 look-up tables -------------------------------------------------------------------------


def test_lookup_equals_int64_indexing_for_every_value():
    table = np.full(256, -1, np.int64)
    table[:34] = np.arange(34) % 20
    table[200] = 255
    lookup = LabelLookup(table)
    raw = np.array([[v for v in range(256) if table[v] >= 0]], np.uint8)
    mapped = lookup(raw, Path("x.png"))
    assert mapped.dtype == torch.uint8
    np.testing.assert_array_equal(mapped.numpy(), table[raw.astype(np.int64)])
    wide = lookup(raw.astype(np.uint16), Path("x.png"))  # 16-bit PNGs holding small values
    assert torch.equal(wide, mapped)


def test_lookup_names_unknown_values_and_the_file():
    table = np.full(256, -1, np.int64)
    table[:3] = [0, 1, 255]
    lookup = LabelLookup(table)
    raw = np.array([[0, 1, 2, 9, 250]], np.uint8)
    with pytest.raises(DatasetError, match=r"bad\.png: unknown label values \[9, 250\]"):
        lookup(raw, Path("bad.png"))
    with pytest.raises(DatasetError, match=r"unknown label values \[300, 9000\]"):
        lookup(np.array([[0, 300, 9000]], np.uint16), Path("bad.png"))
    short = LabelLookup(np.arange(5))  # values at or beyond the table's end are unknown
    with pytest.raises(DatasetError, match=r"\[5\] \(valid: 0\.\.4\)"):
        short(np.array([[4, 5]], np.uint8), Path("bad.png"))
    with pytest.raises(ValueError, match="uint8"):
        LabelLookup(np.array([0, 256]))


def test_lookup_with_every_train_id_used_needs_no_sentinel():
    lookup = LabelLookup(np.arange(256)[::-1])
    raw = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(lookup(raw, Path("x.png")).numpy(), 255 - raw)


# -- uint8 masks end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory) -> Path:
    return write_cityscapes(tmp_path_factory.mktemp("cityscapes"))


def test_uint8_masks_give_the_int64_loss_and_metrics(cityscapes_root):
    dataset = Cityscapes(cityscapes_root, "train", transforms=build_transforms(train=False))
    images, masks = next(iter(DataLoader(dataset, batch_size=3)))
    assert masks.dtype == torch.uint8
    # an int64 mapping through Cityscapes' label table, from the label files themselves
    table = LABELID_TO_TRAINID["19"]
    expected = torch.stack([
        torch.from_numpy(table[np.array(Image.open(dataset.label_path(i))).astype(np.int64)]) for i in range(3)
    ])
    assert expected.dtype == torch.int64 and torch.equal(masks.long(), expected)
    assert (masks == IGNORE).any() and (masks < 19).any()
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 19, *masks.shape[-2:], generator=generator)
    aux = torch.randn(3, 19, *masks.shape[-2:], generator=generator)
    for options in ({}, {"ohem_thresh": 0.7, "ohem_min_kept": 50}):
        loss = SegmentationLoss(IGNORE, **options)
        assert torch.equal(loss(logits, masks, aux), loss(logits, expected, aux))
    results = []
    for target in (masks, expected):
        metrics = SegmentationMetrics(19, ignore_index=IGNORE)
        metrics.update(logits, target)
        results.append((metrics.compute(), metrics.compute_metrics()))
    assert torch.equal(results[0][0], results[1][0]) and results[0][0].sum() == (expected != IGNORE).sum()
    assert results[0][1]["mIoU"] == results[1][1]["mIoU"] and results[0][1]["num_pixels"] > 0


def test_config_classes_is_the_one_label_space_of_convert_and_predict(tmp_path):
    """``data/label_space.config_classes``: what ``atrous convert`` stores and ``predict`` uses."""
    from fixtures_user_data import write_classes

    from atrous.data.cityscapes import CLASSES_19, CLASSES_20
    from atrous.data.label_space import config_classes
    from atrous.data.voc import VOCSegmentation
    from atrous.evaluation.predict_app import class_info
    from atrous.models.checkpoint import label_space

    def data(**dataset):
        return {"data": {"dataset": dataset}}

    assert config_classes(data(name="cityscapes")) is CLASSES_19
    assert config_classes(data(name="cityscapes", variant=20)) is CLASSES_20
    assert config_classes(data(name="cityscapes", variant="21")) is None
    assert config_classes(data(name="voc")) is VOCSegmentation.classes
    assert config_classes({}) is SyntheticStreets.classes
    assert config_classes(data(name="nonsense")) is None
    assert config_classes(data(name="folder", root=str(tmp_path))) is None  # no classes file there
    write_classes(tmp_path / "classes.yaml", {"names": ["background", "road", "car"]})
    folder = data(name="folder", root=str(tmp_path))
    assert config_classes(folder).names == ("background", "road", "car")
    # both users agree, the 20-class variant included
    for cfg in (data(name="cityscapes", variant="20"), folder):
        info = config_classes(cfg)
        assert label_space(cfg, info.num_classes) == (list(info.names), info.ignore_index)
        assert class_info(cfg, info.num_classes).names == info.names
    assert label_space(folder, 5) == (None, config_classes(folder).ignore_index)  # names that do not fit


# -- colour jitter through tables -----------------------------------------------------------------


def random_images(count: int, seed: int):
    """uint8 ``(3, H, W)`` images of odd and even sizes, channels-first and channels-last."""
    rng = np.random.default_rng(seed)
    for n in range(count):
        height, width = (int(v) for v in rng.integers(1, 90, 2))  # several blocks of rows, odd widths
        pixels = torch.from_numpy(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).permute(2, 0, 1)
        yield tv_tensors.Image(pixels if n % 2 else pixels.contiguous())


def test_brightness_contrast_and_saturation_are_bit_identical_to_torchvision():
    from torchvision.transforms.v2 import functional as F

    from atrous.data.color_jitter import adjust_brightness, adjust_contrast, adjust_saturation

    pairs = ((adjust_brightness, F.adjust_brightness), (adjust_contrast, F.adjust_contrast),
             (adjust_saturation, F.adjust_saturation))
    factors = np.random.default_rng(1).uniform(0.0, 2.5, 60)
    for image, factor in zip(random_images(60, seed=0), factors, strict=True):
        plain = image.as_subclass(torch.Tensor)
        for ours, theirs in pairs:
            out, expected = ours(plain, factor), theirs(plain, factor)
            assert torch.equal(out, expected) and out.stride() == expected.stride()


def test_color_jitter_draws_and_computes_what_torchvision_does():
    from atrous.data.color_jitter import ColorJitter

    for strength in (0.2, 0.5):
        ours, theirs = ColorJitter(strength, strength, strength), v2.ColorJitter(strength, strength, strength)
        for seed, image in enumerate(random_images(40, seed=2)):
            mask = tv_tensors.Mask(torch.zeros(image.shape[-2:], dtype=torch.uint8))
            (out, out_mask), state = run(ours, (image, mask), seed)
            (expected, expected_mask), expected_state = run(theirs, (image, mask), seed)
            assert torch.equal(state, expected_state), "a different number or order of random draws"
            assert type(out) is tv_tensors.Image and torch.equal(out, expected) and out_mask is mask
    hue = ColorJitter(0.2, 0.2, 0.2, 0.1)  # hue and float images: torchvision's kernels
    for image in (next(random_images(1, seed=3)), next(random_images(1, seed=3)).float() / 255):
        image = tv_tensors.Image(image)
        assert torch.equal(run(hue, (image,), 4)[0], run(v2.ColorJitter(0.2, 0.2, 0.2, 0.1), (image,), 4)[0])


def test_take_uint8_equals_np_take_for_every_layout():
    from atrous.data.label_maps import take_uint8

    rng = np.random.default_rng(5)
    table = rng.integers(0, 256, 256, dtype=np.uint8)
    values = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    for case in (values, values[:, ::3], values[:1], values.reshape(2, 20, 60), values[:0], values.ravel()):
        out = take_uint8(table, case)
        assert np.array_equal(out, np.take(table, case)) and out.shape == case.shape and out.flags.writeable
