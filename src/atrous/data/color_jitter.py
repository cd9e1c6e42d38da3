"""Colour jitter that computes torchvision's pixels with brightness and contrast as look-up tables.

``v2.ColorJitter`` adjusts a uint8 image in float32: each of brightness, contrast and saturation
multiplies the whole image, adds, clamps and rounds back to uint8 (four passes over a float copy).
Two of them are functions of the pixel value alone:

* brightness ``b``: ``p → trunc(min(p·b, 255))``;
* contrast ``c``: ``p → trunc(clamp(p·c + m·(1 − c), 0, 255))``, ``m`` the image's mean grey
  (computed as torchvision computes it);

so :class:`ColorJitter` evaluates torchvision's own expression on the 256 values ``0 … 255`` and
maps the image through that table (:func:`atrous.data.label_maps.take_uint8`), which gives the
same bytes at a fraction of the cost. Saturation blends each pixel with its own grey value and
hue rotates colours: both stay torchvision's kernels. The random draws are
``v2.ColorJitter.make_params``' (the order of the adjustments, then each factor), so seeding per
``(seed, epoch, index)`` and exact resume hold; ``tests/test_data_pipeline.py`` checks the output
and the generator state against ``v2.ColorJitter``.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .label_maps import take_uint8

VALUES = torch.arange(256, dtype=torch.uint8).view(1, 1, 256)  # every uint8 value, as a 1-channel image


class ColorJitter(v2.ColorJitter):
    """``v2.ColorJitter`` (same arguments, draws and output) with brightness and contrast of
    uint8 RGB images applied as 256-entry tables (module docstring)."""

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
                output = F.adjust_saturation(output, saturation_factor=params["saturation_factor"])
            elif fn_id == 3 and params["hue_factor"] is not None:
                output = F.adjust_hue(output, hue_factor=params["hue_factor"])
        return tv_tensors.wrap(output, like=inpt)


def adjust_brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``F.adjust_brightness`` of a uint8 ``(3, H, W)`` image, through a table of its values."""
    return apply_table(image, F.adjust_brightness(VALUES, factor).view(256))


def adjust_contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``F.adjust_contrast`` of a uint8 ``(3, H, W)`` image: torchvision's mean grey (ITU-R 601
    weights, floored, averaged in float32), then its blend as a table."""
    red, green, blue = image.unbind(-3)
    grey = red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114).floor_()
    mean = torch.mean(grey.unsqueeze(-3), dim=(-3, -2, -1), keepdim=True)
    table = VALUES.mul(float(factor)).add_(mean, alpha=1.0 - float(factor)).clamp_(0, 255).to(torch.uint8)
    return apply_table(image, table.view(256))


def apply_table(image: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``table[image]`` for uint8 ``image`` and a 256-entry uint8 ``table``, in ``image``'s
    memory layout (channels-first or channels-last alike)."""
    order = sorted(range(image.ndim), key=image.stride, reverse=True)
    dense = image.permute(order).contiguous()  # a view when image is dense in some order
    mapped = torch.from_numpy(take_uint8(table.numpy(), dense.numpy()))
    return mapped.permute([order.index(dim) for dim in range(image.ndim)])
