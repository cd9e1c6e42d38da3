"""Build models from specs: each field of a :class:`~atrous.models.spec.ModelSpec` maps straight
onto a constructor argument (the ``model`` section: :mod:`atrous.models.spec`).

The config's values are checked where the spec is parsed; building checks only what needs the
built backbone (the auxiliary head's feature map). An error from a constructor is a bug in it and
keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_config, thaw
from .backbones import Backbone, backbone_entry
from .heads import HEADS, AuxHead, Head
from .segmentor import Segmentor
from .spec import ComponentSpec, ModelSpec, backbone_spec, head_spec


def build_backbone(spec: ComponentSpec | Mapping[str, Any]) -> Backbone:
    """``{name: resnet50, output_stride: 16, ...}`` (or its :class:`ComponentSpec`) → a :class:`Backbone`."""
    if not isinstance(spec, ComponentSpec):
        spec = backbone_spec(spec)
    cls, fixed = backbone_entry(spec.name)
    return cls(**fixed, **spec.kwargs())


def build_head(spec: ComponentSpec | Mapping[str, Any], backbone: Backbone) -> Head:
    """``{name: denseaspp, ...}`` (or its :class:`ComponentSpec`) → a head fed by ``backbone``'s last feature map."""
    if not isinstance(spec, ComponentSpec):
        spec = head_spec(spec)
    cls = HEADS[spec.name]
    return cls(**cls.backbone_arguments(backbone), **spec.kwargs())


def model_spec(config: str | Path | Mapping[str, Any] | ModelSpec) -> ModelSpec:
    """The :class:`ModelSpec` of a config file path, a full config or its ``model`` mapping (a
    spec is returned as it is); a :class:`ConfigError` names the file."""
    if isinstance(config, ModelSpec):
        return config
    source = ""
    if isinstance(config, (str, Path)):
        source = f"{config}: "
        config = load_config(config)
    cfg = config.get("model", config) if isinstance(config, Mapping) else None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}expected a 'model' mapping")
    try:
        return ModelSpec.from_mapping(cfg)
    except ConfigError as err:
        raise ConfigError(f"{source}{err}") from err


def build_model(config: str | Path | Mapping[str, Any] | ModelSpec, *, pretrained_backbone: bool = True) -> Segmentor:
    """Build a :class:`Segmentor` from a :class:`ModelSpec`, or from a config file path, a full
    config or its ``model`` mapping (parsed into a spec first: :func:`model_spec`).

    ``pretrained_backbone`` concerns the backbone's ImageNet weights (``backbone.pretrained``), not
    published segmentation weights (:func:`atrous.load_pretrained`).
    ``pretrained_backbone=False`` builds the architecture only, ignoring
    ``backbone.pretrained``: for a model whose every weight comes from a checkpoint next (no
    ImageNet download), or whose parameters are only counted.

    >>> model = build_model({"num_classes": 19, "backbone": {"name": "resnet18"}, "head": {"name": "fcn"}})
    >>> model.output_stride, model.classifier.out_channels
    (16, 19)
    """
    spec = model_spec(config)
    if not pretrained_backbone:
        spec = spec.without_pretrained_backbone()
    backbone = build_backbone(spec.backbone)
    # after the (ImageNet) weights are in: the first convolution's are adapted (timm's rule)
    if spec.in_channels is not None:  # (a timm backbone may also take its own `in_channels`)
        backbone.set_in_channels(spec.in_channels)
    head = build_head(spec.head, backbone)
    aux_head = aux_feature = None
    if spec.aux_head is not None:
        aux_feature = spec.aux_head.feature
        names = {f.name: f.channels for f in backbone.feature_info}
        if aux_feature not in names:
            raise ConfigError(f"model.aux_head.feature must be one of {sorted(names)}, got {aux_feature!r}")
        aux_head = AuxHead(names[aux_feature], spec.num_classes, **thaw(spec.aux_head.options))
    return Segmentor(
        backbone,
        head,
        spec.num_classes,
        classifier_dropout=spec.classifier_dropout,
        feature_upsample=spec.feature_upsample,
        align_corners=spec.align_corners,
        aux_head=aux_head,
        aux_feature=aux_feature,
    )
