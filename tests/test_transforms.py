"""Joint image/mask transforms: masks stay valid labels, image and mask share the geometry."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from atrous.config import load_config
from atrous.data.transforms import NORMALIZATIONS, build_transforms, transforms_from_config

IGNORE = 255
# mean 0, std 1/255: the normalised image equals the uint8 input, so tests can read it back.
IDENTITY = ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))


def random_pair(height: int = 48, width: int = 64, block: int = 16, seed: int = 0):
    """An image whose pixel values encode its mask: label ``k`` ↔ red ``20·(k+1)``, green ``20 + 2·k²``.

    Labels are constant on ``block × block`` tiles, so antialiased bilinear resizing keeps tile
    interiors exact; green is convex in red, so no blend of different labels at a tile border
    decodes as a valid label. Returns ``tv_tensors.Image`` uint8 (3, H, W), ``tv_tensors.Mask`` int64 (H, W).
    """
    generator = torch.Generator().manual_seed(seed)
    tiles = torch.randint(0, 10, (height // block, width // block), generator=generator)
    mask = tiles.repeat_interleave(block, 0).repeat_interleave(block, 1)
    image = torch.stack([20 * (mask + 1), 20 + 2 * mask**2, torch.full_like(mask, 128)]).to(torch.uint8)
    return tv_tensors.Image(image), tv_tensors.Mask(mask)


def decode(image: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`random_pair`'s encoding for an IDENTITY-normalised image; -1 where the
    pixel is not an exact code (tile borders blended by bilinear resizing, padding)."""
    red, green = image[0].round(), image[1].round()
    labels = (red / 20 - 1).round().long()
    exact = (red == 20 * (labels + 1)) & (green == 20 + 2 * labels**2) & (labels >= 0) & (labels < 10)
    return torch.where(exact, labels, torch.full_like(labels, -1))


@pytest.mark.parametrize("seed", range(6))
def test_random_scale_crop_flip_keep_image_and_mask_aligned(seed: int) -> None:
    image, mask = random_pair(seed=seed)
    transform = build_transforms(
        train=True, scale_range=(0.5, 2.0), crop_size=(56, 72), hflip=True, normalize=IDENTITY
    )
    torch.manual_seed(seed)
    out_image, out_mask = transform(image, mask)
    labels = decode(out_image)
    padded = out_mask == IGNORE
    exact = labels >= 0
    assert exact[~padded].float().mean() > 0.5, "too few exact pixels: the test would test nothing"
    assert torch.equal(labels[exact & ~padded], out_mask[exact & ~padded])
    assert (out_image[:, padded] == 0).all(), "padding must be 0 in the image"


def test_masks_keep_only_input_values_after_scale_and_resize() -> None:
    generator = torch.Generator().manual_seed(0)
    mask = tv_tensors.Mask(torch.tensor([0, 3, 7, 19])[torch.randint(0, 4, (37, 53), generator=generator)])
    image = tv_tensors.Image(torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=generator))
    allowed = {0, 3, 7, 19}
    for resize in [(23, 31), (80, 111)]:
        eval_transform = build_transforms(train=False, resize=resize)
        _, out = eval_transform(image, mask)
        assert out.shape == resize and set(out.unique().tolist()) <= allowed
    train_transform = build_transforms(train=True, resize=(41, 60), scale_range=(0.5, 2.0), crop_size=(50, 50))
    for seed in range(5):
        torch.manual_seed(seed)
        _, out = train_transform(image, mask)
        assert set(out.unique().tolist()) <= allowed | {IGNORE}


def test_random_scale_factor_stays_in_range() -> None:
    image, mask = random_pair(height=40, width=80, block=8)
    transform = build_transforms(train=True, scale_range=(0.5, 1.5))
    heights = set()
    for seed in range(20):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        assert out_image.shape[-2:] == out_mask.shape
        assert 20 <= out_mask.shape[0] <= 60 and 40 <= out_mask.shape[1] <= 120
        assert abs(out_mask.shape[1] / out_mask.shape[0] - 2.0) < 0.1
        heights.add(out_mask.shape[0])
    assert len(heights) > 5


def test_crop_pads_image_with_zero_and_mask_with_ignore_index() -> None:
    image = tv_tensors.Image(torch.full((3, 10, 12), 200, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(10, 12, dtype=torch.int64))
    transform = build_transforms(train=True, crop_size=(20, 30), normalize=IDENTITY, ignore_index=77)
    out_image, out_mask = transform(image, mask)
    assert out_mask.shape == (20, 30)
    assert (out_mask == 1).sum() == 10 * 12 and (out_mask == 77).sum() == 20 * 30 - 10 * 12
    assert (out_image[:, out_mask == 77] == 0).all()
    assert torch.allclose(out_image[:, out_mask == 1], torch.tensor(200.0), atol=1e-3)


def test_flip_flips_image_and_mask_together() -> None:
    image, mask = random_pair()
    transform = build_transforms(train=True, hflip=True, normalize=IDENTITY)
    reference, _ = build_transforms(train=False, normalize=IDENTITY)(image, mask)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        out_image, out_mask = transform(image, mask)
        flipped = torch.equal(out_mask, mask.flip(-1))
        assert flipped or torch.equal(out_mask, mask)
        assert torch.allclose(out_image, reference.flip(-1) if flipped else reference)
        seen.add(flipped)
    assert seen == {True, False}


def test_color_jitter_changes_the_image_only() -> None:
    image, mask = random_pair()
    transform = build_transforms(train=True, color_jitter=0.4, normalize=IDENTITY)
    torch.manual_seed(0)
    out_image, out_mask = transform(image, mask)
    assert torch.equal(out_mask, mask.as_subclass(torch.Tensor))
    assert not torch.allclose(out_image, image.float())


def test_eval_transforms_are_deterministic_and_skip_augmentation() -> None:
    image, mask = random_pair()
    transform = build_transforms(
        train=False, resize=(24, 32), scale_range=(0.5, 2.0), crop_size=(100, 100), hflip=True, color_jitter=0.5
    )
    outputs = []
    for seed in range(3):
        torch.manual_seed(seed)
        outputs.append(transform(image, mask))
    for out_image, out_mask in outputs[1:]:
        assert torch.equal(out_image, outputs[0][0]) and torch.equal(out_mask, outputs[0][1])
    assert outputs[0][1].shape == (24, 32)


@pytest.mark.parametrize("normalize", ["imagenet", "cityscapes", ((0.1, 0.2, 0.3), (0.5, 0.6, 0.7))])
def test_normalization_matches_manual_computation(normalize) -> None:
    image, mask = random_pair()
    out_image, _ = build_transforms(train=False, normalize=normalize)(image, mask)
    mean, std = NORMALIZATIONS[normalize] if isinstance(normalize, str) else normalize
    expected = (image.float() / 255 - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    assert torch.allclose(out_image, expected, atol=1e-5)


def test_official_denseaspp_configs_normalize_with_the_official_statistics() -> None:
    """The official code's ``Normalize`` (DenseASPP inference.py lines 20-22), as its configs'
    evaluation pipeline applies it."""
    mean = torch.tensor([0.290101, 0.328081, 0.286964]).view(3, 1, 1)
    std = torch.tensor([0.182954, 0.186566, 0.184475]).view(3, 1, 1)
    val = load_config("denseaspp/denseaspp121_cityscapes")["data"]["val"]["transforms"]
    image, mask = random_pair()
    out_image, _ = transforms_from_config(val, train=False, ignore_index=IGNORE)(image, mask)
    torch.testing.assert_close(out_image, (image.float() / 255 - mean) / std, rtol=0, atol=1e-5)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("mask_dtype", [torch.uint8, torch.int64])
def test_output_dtypes_and_shapes(train: bool, mask_dtype: torch.dtype) -> None:
    image, mask = random_pair()
    mask = tv_tensors.Mask(mask.to(mask_dtype))
    transform = build_transforms(
        train=train, resize=(40, 60), scale_range=(0.75, 1.25), crop_size=(32, 48), hflip=True, color_jitter=0.2
    )
    out_image, out_mask = transform(image, mask)
    assert type(out_image) is torch.Tensor and type(out_mask) is torch.Tensor
    assert out_image.dtype == torch.float32 and out_mask.dtype == mask_dtype  # masks keep their dtype
    assert out_image.shape == ((3, 32, 48) if train else (3, 40, 60))
    assert out_mask.shape == out_image.shape[1:]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scale_range": (2.0, 0.5)}, "scale_range"),
        ({"scale_range": (0.0, 1.0)}, "scale_range"),
        ({"scale_range": (1.0,)}, "scale_range"),
        ({"crop_size": (0, 5)}, "crop_size"),
        ({"crop_size": (5,)}, "crop_size"),
        ({"resize": "big"}, "resize"),
        ({"resize": (1.5, 2)}, "resize"),
        ({"normalize": "coco"}, "imagenet"),
        ({"normalize": ((0.0, 0.0), (1.0, 1.0, 1.0))}, "one value per image channel"),
        ({"normalize": ((), ())}, "one value per image channel"),
        ({"normalize": ((0.0, 0.0, 0.0), (1.0, 0.0, 1.0))}, "std > 0"),
        ({"color_jitter": -0.1}, "color_jitter"),
        ({"hflip": "yes"}, "hflip"),
    ],
)
def test_bad_arguments_raise_value_errors(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_transforms(train=True, **options)


def test_transforms_from_config_maps_keys_and_rejects_unknown_ones() -> None:
    cfg = {"resize": [40, 60], "scale_range": [0.5, 2.0], "crop_size": [32, 32], "hflip": True,
           "color_jitter": 0.1, "normalize": [[0.5, 0.5, 0.5], [0.25, 0.25, 0.25]]}
    image, mask = random_pair()
    out_image, out_mask = transforms_from_config(cfg, train=True, ignore_index=IGNORE)(image, mask)
    assert out_image.shape == (3, 32, 32) and out_mask.shape == (32, 32)
    out_image, out_mask = transforms_from_config(cfg, train=False, ignore_index=IGNORE)(image, mask)
    assert out_image.shape == (3, 40, 60)
    plain, _ = transforms_from_config(None, train=False, ignore_index=IGNORE)(image, mask)
    assert plain.shape == (3, 48, 64)
    with pytest.raises(ValueError, match="valid keys.*crop_size"):
        transforms_from_config({"crop": [32, 32]}, train=True, ignore_index=IGNORE)
