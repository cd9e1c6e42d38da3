"""The contract every context head follows (mmsegmentation's ``BaseDecodeHead`` is the anchor).

A head maps the backbone's last feature map ``(N, in_channels, h, w)`` to
``(N, out_channels, h / extra_stride, w / extra_stride)``; the segmentor puts the classifier on
top and never asks which head it holds. What a head tells the rest of atrous:

* ``out_channels``, ``extra_stride`` (how much further the head downsamples; 1 for all but
  DeepLabv3's cascade without atrous rates), ``global_context`` (image-level pooling);
* :meth:`conv_path` — the longest chain of convolutions, for the theoretical receptive field
  (report §4.1);
* :meth:`backbone_arguments` — the constructor arguments the builder derives from the backbone;
* :meth:`backbone_output_stride`, :meth:`check_output_stride` and :meth:`set_output_stride` —
  how the head follows an output-stride switch at inference (DeepLabv3 §4.3: train at 16,
  evaluate at 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn

from ..receptive_field import ConvSpec

if TYPE_CHECKING:
    from ..backbones import Backbone


class Head(nn.Module):
    """Base class of the context heads (see the module docstring for the contract)."""

    in_channels: int
    out_channels: int
    extra_stride: int = 1
    global_context: bool = False

    @classmethod
    def backbone_arguments(cls, backbone: Backbone) -> dict[str, Any]:
        """Constructor arguments taken from the backbone rather than the config."""
        return {"in_channels": backbone.out_channels}

    def conv_path(self) -> list[ConvSpec]:
        """The convolutions along the head's longest path, input to output."""
        raise NotImplementedError(f"{type(self).__name__} must describe its conv_path()")

    def backbone_output_stride(self, output_stride: int) -> int:
        """The backbone output stride this head needs for a model output stride (before any
        feature upsampling): the same, for a head that keeps the resolution."""
        return output_stride

    def check_output_stride(self, old: int, new: int) -> None:
        """Raise ``ValueError`` if the head cannot follow a switch from ``old`` to ``new``
        (called before anything changes, so a refused switch leaves the model intact)."""

    def set_output_stride(self, old: int, new: int, backbone: Backbone) -> None:
        """Follow the model's switch from output stride ``old`` to ``new``, after ``backbone``
        has been re-dilated. Default: nothing (rates in feature-map pixels stay, as the
        official DenseASPP code keeps them)."""
