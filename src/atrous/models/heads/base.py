"""The contract every context head follows (mmsegmentation's ``BaseDecodeHead`` is the anchor).

A head maps the backbone's last feature map ``(N, in_channels, h, w)`` to
``(N, out_channels, h / extra_stride, w / extra_stride)``; the segmentor puts the classifier on
top and never asks which head it holds. What a head tells the rest of atrous:

* ``out_channels``, ``extra_stride`` (how much further the head downsamples; 1 for all but
  DeepLabv3's cascade without atrous rates), ``global_context`` (image-level pooling);
* :meth:`conv_path` — the longest chain of convolutions, for the theoretical receptive field
  (report §4.1);
* :meth:`path_fields` — the scales the head samples: the fields of all its paths (report §4.1),
  for ``atrous analyze receptive-field``;
* :meth:`removable_layers` — the layers block removal may switch off (report §5.2, Fig. 4), for
  ``atrous analyze block-removal``; none unless the head says so;
* :meth:`backbone_arguments` — the constructor arguments the builder derives from the backbone;
* ``removed_options`` — config keys of earlier versions and what replaces each (the builder
  refuses them with that advice);
* :meth:`backbone_output_stride`, :meth:`check_output_stride` and :meth:`set_output_stride` —
  how the head follows an output-stride switch at inference (DeepLabv3 §4.3: train at 16,
  evaluate at 8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from ...config import ConfigError, check_arguments, check_mapping
from ..receptive_field import ConvSpec, PathFields, chain_fields

if TYPE_CHECKING:
    from ..backbones import Backbone


class Head(nn.Module):
    """Base class of the context heads (see the module docstring for the contract)."""

    in_channels: int
    out_channels: int
    extra_stride: int = 1
    global_context: bool = False
    removed_options: ClassVar[Mapping[str, str]] = {}
    # a decoder's skip connection (DeepLabV3+): the stride of the backbone map the head also reads,
    # passed as ``forward(x, low_level)``; its output is then at that stride
    low_level_stride: int | None = None

    @classmethod
    def check_options(cls, section: str, options: Mapping[str, Any]) -> None:
        """The value rules of a config's ``options`` for this head that need no backbone (their
        types are checked from the constructor's annotations before): a :class:`ConfigError`
        naming ``<section>.<key>``. :class:`~atrous.models.spec.ModelSpec` runs them where the
        config is parsed. The default checks ``atrous_rates`` (positive integers)."""
        if "atrous_rates" in options:
            check_atrous_rates(f"{section}.atrous_rates", options["atrous_rates"])

    @classmethod
    def backbone_arguments(cls, backbone: Backbone) -> dict[str, Any]:
        """Constructor arguments taken from the backbone rather than the config."""
        return {"in_channels": backbone.out_channels}

    def conv_path(self) -> list[ConvSpec]:
        """The convolutions along the head's longest path, input to output."""
        raise NotImplementedError(f"{type(self).__name__} must describe its conv_path()")

    def path_fields(self) -> PathFields:
        """The receptive fields of the head's paths, input to output (feature-map pixels).
        Default: the head is one chain, :meth:`conv_path` (its field after each convolution)."""
        return chain_fields(self.conv_path())

    def removable_layers(self) -> list[tuple[nn.Module, ConvSpec]]:
        """The layers block removal (report §5.2, Fig. 4) may switch off, bottom to top, each with
        its convolution: modules whose output can be replaced by zeros while everything above
        keeps its input width. Default: none (block removal does not apply to the head)."""
        return []

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


def check_atrous_rates(key: str, rates: Any) -> None:
    """Atrous rates are positive integers, at least one."""
    if not rates or min(rates) < 1:
        raise ConfigError(f"{key}: must be positive integers, got {list(rates)}")


def check_inner_head(section: str, head: type[Head], options: Any) -> None:
    """The options of a head that a head builds inside itself (DeepLabV3+'s context, a cascade's
    ASPP): keys, types and value rules as for ``model.head``; ``in_channels`` comes from outside."""
    from ..spec import check_component_keys

    check_mapping(section, options)
    check_component_keys(section, options, head, ("in_channels",))
    check_arguments(section, head, options)
    head.check_options(section, options)
