"""Colour jitter that computes torchvision's pixels with less memory traffic.

``v2.ColorJitter`` adjusts a uint8 image in float32: each of brightness, contrast and saturation
multiplies the whole image, adds, clamps and rounds back to uint8 (four passes over a float copy
four times the image's size). :class:`ColorJitter` computes the same bytes:

* brightness ``b``: ``p → trunc(min(p·b, 255))`` and contrast ``c``:
  ``p → trunc(clamp(p·c + m·(1 − c), 0, 255))`` (``m`` the image's mean grey, computed as
  torchvision computes it) are functions of the pixel value alone: torchvision's own expression
  is evaluated on the 256 values ``0 … 255`` and the image mapped through that table
  (:func:`atrous.data.label_maps.take_uint8`);
* saturation blends each pixel with its own grey value: torchvision's operations, run on
  :data:`BLOCK_ROWS` rows at a time so that the float intermediates stay in the CPU cache
  (element-wise operations: the blocks give the same values as the whole image).

Hue stays torchvision's kernel. The random draws are ``v2.ColorJitter.make_params``' (the order
of the adjustments, then each factor), so seeding per ``(seed, epoch, index)`` and exact resume
hold; ``tests/test_data_pipeline.py`` checks output and generator state against ``v2.ColorJitter``.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .label_maps import take_uint8

VALUES = torch.arange(256, dtype=torch.uint8).view(1, 1, 256)  # every uint8 value, as a 1-channel image
BLOCK_ROWS = 32  # rows per block: 3 × 32 × 1024 float32 values are 384 kB, within an L2 cache


class ColorJitter(v2.ColorJitter):
    """``v2.ColorJitter`` (same arguments, draws and output); on uint8 RGB images brightness and
    contrast are 256-entry tables and saturation runs by blocks of rows (module docstring)."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not (isinstance(inpt, tv_tensors.Image) and inpt.dtype == torch.uint8 and inpt.ndim == 3 and inpt.shape[0] == 3):
            return super().transform(inpt, params)
        output = inpt.as_subclass(torch.Tensor)
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                output = adjust_brightness(output, params["brightness_factor"])
            elif fn_id == 1 and params["contrast_factor"] is not None:
                output = adjust_contrast(output, params["contrast_factor"])
            elif fn_id == 2 and params["saturation_factor"] is not None:
                output = adjust_saturation(output, params["saturation_factor"])
            elif fn_id == 3 and params["hue_factor"] is not None:
                output = F.adjust_hue(output, hue_factor=params["hue_factor"])
        return tv_tensors.wrap(output, like=inpt)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``F.adjust_brightness`` of a uint8 ``(3, H, W)`` image, through a table of its values."""
    return apply_table(image, F.adjust_brightness(VALUES, factor).view(256))


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``F.adjust_contrast`` of a uint8 ``(3, H, W)`` image: torchvision's mean grey (ITU-R 601
    weights, floored, averaged in float32), then its blend as a table."""
    grey = torch.empty(image.shape[-2:], dtype=torch.float32)
    for rows in _blocks(image.shape[-2]):
        grey[rows] = _grey(image[:, rows])
    mean = torch.mean(grey.unsqueeze(-3), dim=(-3, -2, -1), keepdim=True)
    table = VALUES.mul(float(factor)).add_(mean, alpha=1.0 - float(factor)).clamp_(0, 255).to(torch.uint8)
    return apply_table(image, table.view(256))


def adjust_saturation(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``F.adjust_saturation`` of a uint8 ``(3, H, W)`` image, :data:`BLOCK_ROWS` rows at a time:
    each pixel blended with its floored grey value in float32, clamped, truncated to uint8."""
    output = torch.empty_like(image)
    for rows in _blocks(image.shape[-2]):
        block = image[:, rows]
        output[:, rows] = block.mul(float(factor)).add_(_grey(block), alpha=1.0 - float(factor)).clamp_(0, 255)
    return output


def _grey(image: torch.Tensor) -> torch.Tensor:
    """torchvision's grey of a uint8 ``(3, h, w)`` image as float32 ``(h, w)``, floored."""
    red, green, blue = image.unbind(-3)
    return red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).floor_()


def _blocks(height: int) -> list[slice]:
    return [slice(top, top + BLOCK_ROWS) for top in range(0, height, BLOCK_ROWS)]


def apply_table(image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``table[image]`` for uint8 ``image`` and a 256-entry uint8 ``table``, in ``image``'s
    memory layout (channels-first or channels-last alike)."""
    order = sorted(range(image.ndim), key=image.stride, reverse=True)
    dense = image.permute(order).contiguous()  # a view when image is dense in some order
    mapped = torch.from_numpy(take_uint8(table.numpy(), dense.numpy()))
    return mapped.permute([order.index(dim) for dim in range(image.ndim)])
