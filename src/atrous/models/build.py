"""Build models from config mappings: each section maps straight onto constructor arguments.

``model`` section::

    num_classes: 19
    in_channels: 3                                  # image channels (1: grey, 4: RGB-NIR, ...)
    backbone: {name: densenet121, output_stride: 8, pretrained: false, frozen: false}
    head: {name: denseaspp, atrous_rates: [3, 6, 12, 18, 24], growth_channels: 64, ...}
    aux_head: {feature: block3, channels: 256}      # optional
    classifier_dropout: 0.0
    feature_upsample: 1
    align_corners: false
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..config import (
    ConfigError,
    check_arguments,
    check_keys,
    check_mapping,
    check_value,
    load_config,
)
from .backbones import BACKBONES, Backbone, FeatureInfo, backbone_entry, is_backbone_name
from .heads import HEADS, AuxHead, Head
from .segmentor import Segmentor

MAX_CLASSES = 65535  # labels 0..65534 and an ignore value: what a 16-bit label PNG holds
MODEL_KEYS = ("num_classes", "in_channels", "backbone", "head", "aux_head", "classifier_dropout", "feature_upsample", "align_corners")


def _check_keys(section: str, given: Mapping[str, Any], target: Any, fixed: tuple[str, ...] = ()) -> None:
    removed = getattr(target, "removed_options", {})  # a head's options of earlier versions
    if retired := sorted(key for key in given if key in removed):
        advice = dict.fromkeys(removed[key] for key in retired)  # each piece of advice once
        verb = "was" if len(retired) == 1 else "were"
        raise ConfigError(f"{section}: {', '.join(map(repr, retired))} {verb} removed: {'; '.join(advice)}")
    params = inspect.signature(target).parameters
    allowed = [p for p in params if p not in fixed and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    check_keys(section, given, allowed)


def check_model_section(cfg: Any) -> None:
    """Validate a ``model`` section without building it: a mapping with known keys, the
    required ``num_classes``, ``backbone`` and ``head``, names and keys the builders accept,
    and the top-level values' types and ranges. Raises :class:`ConfigError`."""
    check_mapping("model", cfg)
    check_keys("model", cfg, MODEL_KEYS)
    for key in ("num_classes", "backbone", "head"):
        if key not in cfg:
            raise ConfigError(f"model: missing required key {key!r}")
    check_value("model.num_classes", cfg["num_classes"], int)
    if not 1 <= cfg["num_classes"] <= MAX_CLASSES:
        raise ConfigError(f"model.num_classes: must be from 1 to {MAX_CLASSES} (label maps are 16-bit PNGs), "
                          f"got {cfg['num_classes']!r}")
    name, kwargs = _split_name("model.backbone", cfg["backbone"], BACKBONES, is_backbone_name)
    backbone_cls, fixed = backbone_entry(name)
    _check_keys(f"model.backbone ({name})", kwargs, backbone_cls, tuple(fixed))
    check_arguments("model.backbone", backbone_cls, kwargs)
    name, kwargs = _split_name("model.head", cfg["head"], HEADS)
    # the names of the arguments a head takes from its backbone (their values do not matter here)
    stand_in = SimpleNamespace(out_channels=1, output_stride=32, last_dilation=1, feature_info=[FeatureInfo("f", 1, 4)])
    derived = tuple(HEADS[name].backbone_arguments(stand_in))
    _check_keys(f"model.head ({name})", kwargs, HEADS[name], derived)
    check_arguments("model.head", HEADS[name], kwargs)
    if cfg.get("aux_head"):
        check_mapping("model.aux_head", cfg["aux_head"])
        aux_kwargs = {k: v for k, v in cfg["aux_head"].items() if k != "feature"}
        _check_keys("model.aux_head", aux_kwargs, AuxHead, ("in_channels", "num_classes"))
        check_arguments("model.aux_head", AuxHead, aux_kwargs)
    if "in_channels" in cfg:
        check_value("model.in_channels", cfg["in_channels"], int)
        if cfg["in_channels"] < 1:
            raise ConfigError(f"model.in_channels: must be >= 1, got {cfg['in_channels']!r}")
    for key, kind in (("classifier_dropout", float), ("feature_upsample", int), ("align_corners", bool)):
        if key in cfg:
            check_value(f"model.{key}", cfg[key], kind)
    if not 0 <= cfg.get("classifier_dropout", 0.0) < 1:
        raise ConfigError(f"model.classifier_dropout: a probability in [0, 1), got {cfg['classifier_dropout']!r}")
    if cfg.get("feature_upsample", 1) < 1:
        raise ConfigError(f"model.feature_upsample: must be >= 1, got {cfg['feature_upsample']!r}")


def _split_name(
    section: str, cfg: Mapping[str, Any] | None, registry: Mapping[str, Any], known: Any = None
) -> tuple[str, dict[str, Any]]:
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ConfigError(f"{section}: needs a mapping with a 'name' key; names: {sorted(registry)}")
    kwargs = dict(cfg)
    name = kwargs.pop("name")
    if not (known(name) if known is not None else name in registry):
        extra = " or timm/<model>" if known is not None else ""
        raise ConfigError(f"{section}: unknown name {name!r}; choose from {sorted(registry)}{extra}")
    return name, kwargs


def build_backbone(cfg: Mapping[str, Any]) -> Backbone:
    """``{name: resnet50, output_stride: 16, ...}`` → a :class:`Backbone`."""
    name, kwargs = _split_name("model.backbone", cfg, BACKBONES, is_backbone_name)
    cls, fixed = backbone_entry(name)
    _check_keys(f"model.backbone ({name})", kwargs, cls, tuple(fixed))
    return cls(**fixed, **kwargs)


def build_head(cfg: Mapping[str, Any], backbone: Backbone) -> Head:
    """``{name: denseaspp, ...}`` → a head fed by ``backbone``'s last feature map."""
    name, kwargs = _split_name("model.head", cfg, HEADS)
    cls = HEADS[name]
    derived = cls.backbone_arguments(backbone)
    _check_keys(f"model.head ({name})", kwargs, cls, tuple(derived))
    return cls(**derived, **kwargs)


def build_model(config: str | Path | Mapping[str, Any], *, pretrained_backbone: bool = True) -> Segmentor:
    """Build a :class:`Segmentor` from a config file path, a full config or its ``model`` mapping.

    ``pretrained_backbone`` concerns the backbone's ImageNet weights (``backbone.pretrained``), not
    published segmentation weights (:func:`atrous.load_pretrained`).
    ``pretrained_backbone=False`` builds the architecture only, ignoring
    ``backbone.pretrained``: for a model whose every weight comes from a checkpoint next (no
    ImageNet download), or whose parameters are only counted.

    >>> model = build_model({"num_classes": 19, "backbone": {"name": "resnet18"}, "head": {"name": "fcn"}})
    >>> model.output_stride, model.classifier.out_channels
    (16, 19)
    """
    source = ""
    if isinstance(config, (str, Path)):
        source = f"{config}: "
        config = load_config(config)
    cfg = config.get("model", config) if isinstance(config, Mapping) else None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{source}expected a 'model' mapping")
    try:
        check_model_section(cfg)
        backbone_cfg = cfg["backbone"]
        if not pretrained_backbone and isinstance(backbone_cfg, Mapping):
            backbone_cfg = {**backbone_cfg, "pretrained": False}
        backbone = build_backbone(backbone_cfg)
        # after the (ImageNet) weights are in: the first convolution's are adapted (timm's rule)
        if "in_channels" in cfg:  # (a timm backbone may also take its own `in_channels`)
            backbone.set_in_channels(int(cfg["in_channels"]))
        feature_upsample = int(cfg.get("feature_upsample", 1))
        head = build_head(cfg["head"], backbone)
        aux_head = aux_feature = None
        if cfg.get("aux_head"):
            aux_cfg = dict(cfg["aux_head"])
            aux_feature = aux_cfg.pop("feature", None)
            names = {f.name: f.channels for f in backbone.feature_info}
            if aux_feature not in names:
                raise ConfigError(f"model.aux_head.feature must be one of {sorted(names)}, got {aux_feature!r}")
            _check_keys("model.aux_head", aux_cfg, AuxHead, ("in_channels", "num_classes"))
            aux_head = AuxHead(names[aux_feature], int(cfg["num_classes"]), **aux_cfg)
        return Segmentor(
            backbone,
            head,
            int(cfg["num_classes"]),
            classifier_dropout=float(cfg.get("classifier_dropout", 0.0)),
            feature_upsample=feature_upsample,
            align_corners=bool(cfg.get("align_corners", False)),
            aux_head=aux_head,
            aux_feature=aux_feature,
        )
    except (ConfigError, ValueError, TypeError) as err:
        raise ConfigError(f"{source}{err}") from err
