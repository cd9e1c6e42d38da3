"""Joint image/mask transforms for training and evaluation (torchvision transforms v2).

Every transform receives ``(tv_tensors.Image uint8 (3, H, W), tv_tensors.Mask int64 (H, W))``
and moves both through the same geometry. torchvision v2 dispatches on the tensor type: the
image is resized bilinearly with antialiasing, the mask with nearest neighbour, so label maps
never receive interpolated (invalid) ids; photometric jitter and normalisation touch the image
only. The output is plain tensors: image float32 ``(3, h, w)`` normalised, mask int64 ``(h, w)``.

Training pipeline (DeepLabv3 §4 "Training protocol"; DenseASPP §4.1)::

    [resize (H, W)] → random scale ∈ scale_range → random crop (pad: image 0, mask ignore)
    → random horizontal flip → colour jitter → float32 → normalise

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
        scale_range: ``(min, max)`` random scale factor, e.g. ``(0.5, 2.0)`` (DeepLabv3).
        crop_size: random crop ``(h, w)``; smaller inputs are padded (image 0 before colour
            jitter, mask ``ignore_index``) so every crop has this size, e.g. ``(513, 513)``
            (DeepLab, VOC) or ``(512, 1024)`` (Cityscapes).
        hflip: random horizontal flip with probability 0.5.
        color_jitter: brightness, contrast and saturation strength (0 disables it).
        normalize: a key of :data:`NORMALIZATIONS` or ``(mean, std)``, three values each.
        ignore_index: mask value for padded pixels.

    Returns:
        a ``v2.Compose`` giving image float32 ``(3, h, w)`` and mask int64 ``(h, w)``.
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
        if scale_range is not None and scale_range != (1.0, 1.0):
            steps.append(RandomScale(scale_range))
        if crop_size is not None:
            fill = {tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}
            steps.append(v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill))
        if hflip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
        if color_jitter > 0:
            strength = float(color_jitter)
            steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    steps += [
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, "others": None}, scale=True),
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
        raise ConfigError(f"normalize must be a name or (mean, std) with three values each, got {normalize!r}") from err
    if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
        raise ConfigError(f"normalize (mean, std) needs three values each and std > 0, got {normalize!r}")
    return mean, std
