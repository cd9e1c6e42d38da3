"""Joint image/mask transforms for training and evaluation (torchvision transforms v2).

Every transform receives ``(tv_tensors.Image uint8 (3, H, W), tv_tensors.Mask uint8 (H, W))``
(int64 masks, for label spaces beyond uint8, pass through the same way) and moves both through
the same geometry. torchvision v2 dispatches on the tensor type: the
image is resized bilinearly with antialiasing, the mask with nearest neighbour, so label maps
never receive interpolated (invalid) ids; photometric jitter and normalisation touch the image
only. The output is plain tensors: image float32 ``(3, h, w)`` normalised, the mask in its
input dtype ``(h, w)`` (uint8: the loss casts it on the device).

Training pipeline (DeepLabv3 §4 "Training protocol"; DenseASPP §4.1)::

    [resize (H, W)] → random scale ∈ scale_range → random crop (pad: image 0, mask ignore)
    → random horizontal flip → colour jitter → float32 → normalise

Colour jitter is :class:`atrous.data.color_jitter.ColorJitter`: ``v2.ColorJitter``'s draws and
pixels, computed with less memory traffic on uint8 images.

Random scale and crop run as one step, :class:`RandomScaleCrop`: the crop window is computed in
the source frame, and only that region is resized (a 1024×2048 Cityscapes frame scaled by 2 is
never materialised at 2048×4096). Its random draws are the ones of resizing the whole frame then
cropping (same generator calls, same order), so the crop covers the same scene region at the
same scale; pixel values differ from resize-whole-then-crop only by the sub-pixel rounding of
the source box to whole pixels (docs/data_pipeline.md quantifies it).

Evaluation keeps only ``[resize] → float32 → normalise``: deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..errors import ConfigError
from .color_jitter import ColorJitter
from .image_files import check_image_pixels

# name → (mean, std) per RGB channel, for images scaled to [0, 1].
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # The official DenseASPP code's Cityscapes statistics (DenseASPP inference.py, data_transforms).
    "cityscapes": ((0.290101, 0.328081, 0.286964), (0.182954, 0.186566, 0.184475)),
}

CONFIG_KEYS = ("resize", "scale_range", "crop_size", "hflip", "color_jitter", "normalize")


class RandomScale(v2.Transform):
    """Rescale image and mask by one factor drawn uniformly from ``scale_range``.

    DeepLabv3 trains with factors 0.5–2.0. The output size is ``round(H·s), round(W·s)``; the
    image is resized bilinearly with antialiasing, the mask (by its ``tv_tensors.Mask`` type)
    with nearest neighbour. The factor comes from ``torch``'s generator, so ``torch.manual_seed``
    and DataLoader worker seeding control it.
    """

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.scale_range = _check_scale_range(scale_range)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, params["size"], antialias=True)


class RandomScaleCrop(v2.Transform):
    """Random scale by a factor from ``scale_range``, then a random ``crop_size`` crop padded
    where the scaled frame is smaller (image 0, mask ``ignore_index``), resizing only the crop.

    The draws replicate :class:`RandomScale` followed by ``v2.RandomCrop(crop_size,
    pad_if_needed=True)``: the factor ``s`` (``torch.rand``), then the crop's top and left
    (``torch.randint``, each only where the padded scaled frame exceeds the crop). The window
    ``[top, top + h)`` of the padded, scaled frame maps back to source rows
    ``[round(y0·H/H'), round(y1·H/H'))`` (``H' = round(H·s)``, ``y0, y1`` its part inside the
    scaled frame); that region is resized to ``y1 − y0`` rows (image bilinear with antialiasing,
    mask nearest), then padded. Same for columns.
    """

    def __init__(self, scale_range: tuple[float, float], crop_size: tuple[int, int], ignore_index: int = 255) -> None:
        super().__init__()
        self.scale_range = _check_scale_range(scale_range)
        self.crop_size = crop_size
        self.ignore_index = ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        scaled = (max(1, round(height * scale)), max(1, round(width * scale)))
        # v2.RandomCrop(pad_if_needed=True) pads a short side by the shortfall on *both* ends,
        # then draws top (if the padded height exceeds the crop) before left (same for width).
        padded = [size + 2 * max(0, crop - size) for size, crop in zip(scaled, self.crop_size, strict=True)]
        offsets = [
            int(torch.randint(0, size - crop + 1, size=())) if size > crop else 0
            for size, crop in zip(padded, self.crop_size, strict=True)
        ]
        box, output, padding = [], [], []
        for source, size, crop, offset in zip((height, width), scaled, self.crop_size, offsets, strict=True):
            start = offset - max(0, crop - size)  # window start in the scaled frame (< 0: padding)
            first, last = max(0, start), min(size, start + crop)
            begin = min(round(first * source / size), source - 1)
            end = max(round(last * source / size), begin + 1)
            box.append((begin, end))
            output.append(last - first)
            padding.append((first - start, start + crop - last))
        (top, bottom), (left, right) = box
        (pad_top, pad_bottom), (pad_left, pad_right) = padding
        return {
            "top": top, "left": left, "height": bottom - top, "width": right - left,
            "size": output, "padding": [pad_left, pad_top, pad_right, pad_bottom],
        }

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        region = self._call_kernel(
            F.crop, inpt, top=params["top"], left=params["left"], height=params["height"], width=params["width"]
        )
        region = self._call_kernel(F.resize, region, params["size"], antialias=True)
        if any(params["padding"]):
            fill = self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0
            region = self._call_kernel(F.pad, region, padding=params["padding"], fill=fill)
        return region


def build_transforms(
    *,
    train: bool,
    resize: tuple[int, int] | None = None,
    scale_range: tuple[float, float] | None = None,
    crop_size: tuple[int, int] | None = None,
    hflip: bool = False,
    color_jitter: float = 0.0,
    normalize: str | tuple = "imagenet",
    ignore_index: int = 255,
) -> v2.Compose:
    """Build the joint transform ``(image, mask) → (image, mask)``.

    Args:
        train: ``True`` adds the random augmentations below; ``False`` keeps only ``resize`` and
            normalisation (the augmentation options are still validated, then ignored).
        resize: fixed output size ``(H, W)`` applied first, e.g. ``(512, 1024)`` for Cityscapes in
            the DenseASPP report.
        scale_range: ``(min, max)`` random scale factor, e.g. ``(0.5, 2.0)`` (DeepLabv3); with
            ``crop_size`` only the crop's region is resized (:class:`RandomScaleCrop`).
        crop_size: random crop ``(h, w)``; smaller inputs are padded (image 0 before colour
            jitter, mask ``ignore_index``) so every crop has this size, e.g. ``(513, 513)``
            (DeepLab, VOC) or ``(512, 1024)`` (Cityscapes).
        hflip: random horizontal flip with probability 0.5.
        color_jitter: brightness, contrast and saturation strength (0 disables it).
        normalize: a key of :data:`NORMALIZATIONS` or ``(mean, std)``, one value per image channel
            each (``[[0.5], [0.25]]`` for grey images, four values each for RGB-NIR).
        ignore_index: mask value for padded pixels.

    Returns:
        a ``v2.Compose`` giving image float32 ``(3, h, w)`` and the mask ``(h, w)`` in its input
        dtype (uint8 from atrous' datasets).
    """
    mean, std = _check_normalize(normalize)
    resize = _check_size("resize", resize)
    crop_size = _check_size("crop_size", crop_size)
    if scale_range is not None:
        scale_range = _check_scale_range(scale_range)
    if not isinstance(hflip, bool):
        raise ConfigError(f"hflip must be true or false, got {hflip!r}")
    if isinstance(color_jitter, bool) or not isinstance(color_jitter, (int, float)) or color_jitter < 0:
        raise ConfigError(f"color_jitter must be a number >= 0, got {color_jitter!r}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ConfigError(f"ignore_index must be an integer, got {ignore_index!r}")

    steps: list[v2.Transform] = []
    if resize is not None:
        steps.append(v2.Resize(resize, antialias=True))
    if train:
        scales = scale_range is not None and scale_range != (1.0, 1.0)
        if scales and crop_size is not None:
            steps.append(RandomScaleCrop(scale_range, crop_size, ignore_index))
        elif scales:
            steps.append(RandomScale(scale_range))
        if crop_size is not None and not scales:
            fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
            steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill))
        if hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if color_jitter > 0:
            strength = float(color_jitter)
            steps.append(ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    steps += [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
        v2.Normalize(mean, std),
        v2.ToPureTensor(),
    ]
    return v2.Compose(steps)


def transforms_from_config(cfg: Mapping[str, Any] | None, *, train: bool, ignore_index: int) -> v2.Compose:
    """Build transforms from a config mapping whose keys are :func:`build_transforms`' options.

    YAML lists become tuples; ``None`` or ``{}`` gives plain normalisation (ImageNet statistics).
    An unknown key raises ``ValueError`` naming the valid keys.
    """
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"unknown transform option(s) {unknown}; valid keys: {list(CONFIG_KEYS)}")
    options: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in ("resize", "scale_range", "crop_size") and isinstance(value, list):
            value = tuple(value)
        if key == "normalize" and isinstance(value, list):
            value = tuple(tuple(part) if isinstance(part, list) else part for part in value)
        options[key] = value
    return build_transforms(train=train, ignore_index=ignore_index, **options)


def _check_scale_range(scale_range: Sequence[float]) -> tuple[float, float]:
    try:
        low, high = (float(s) for s in scale_range)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"scale_range must be (min, max), got {scale_range!r}") from err
    if not 0 < low <= high:
        raise ConfigError(f"scale_range must satisfy 0 < min <= max, got {scale_range!r}")
    return low, high


def _check_size(option: str, size: Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if (
        isinstance(size, (str, bytes))
        or not isinstance(size, Sequence)
        or len(size) != 2
        or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ConfigError(f"{option} must be (height, width), two positive integers, got {size!r}")
    check_image_pixels(option, int(size[0]), int(size[1]))
    return (int(size[0]), int(size[1]))


def _check_normalize(normalize: str | tuple) -> tuple[list[float], list[float]]:
    if isinstance(normalize, str):
        if normalize not in NORMALIZATIONS:
            raise ConfigError(f"unknown normalize {normalize!r}; choose one of {sorted(NORMALIZATIONS)} or (mean, std)")
        mean, std = NORMALIZATIONS[normalize]
        return list(mean), list(std)
    try:
        mean, std = normalize
        mean, std = [float(m) for m in mean], [float(s) for s in std]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"normalize must be a name or (mean, std) with one value per image channel each, "
                          f"got {normalize!r}") from err
    if not mean or len(mean) != len(std) or min(std) <= 0:
        raise ConfigError(f"normalize (mean, std) needs one value per image channel each (3 for RGB) and std > 0, "
                          f"got {normalize!r}")
    return mean, std
