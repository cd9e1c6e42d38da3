"""The ``model`` section of a config, parsed once into a frozen :class:`ModelSpec`.

``model`` section::

    num_classes: 19
    in_channels: 3                                  # image channels (1: grey, 4: RGB-NIR, ...)
    backbone: {name: densenet121, output_stride: 8, pretrained: false, frozen: false}
    head: {name: denseaspp, atrous_rates: [3, 6, 12, 18, 24], growth_channels: 64, ...}
    aux_head: {feature: block3, channels: 256}      # optional
    classifier_dropout: 0.0
    feature_upsample: 1
    align_corners: false

:meth:`ModelSpec.from_mapping` is where every value of the section is checked: known keys (with
a "did you mean"), the registered backbone and head names, each component's options against its
constructor's signature and annotations, and the value rules a head declares
(:meth:`~atrous.models.heads.base.Head.check_options`). :func:`atrous.models.build.build_model`
builds from the spec and checks nothing of the config again.

This module imports no torch: the registries it checks names against are imported when a section
is parsed.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import SimpleNamespace
from typing import Any

from ..config import (
    ConfigError,
    ReadOnlyDict,
    check_arguments,
    check_keys,
    check_mapping,
    check_value,
    freeze,
    thaw,
)

MAX_CLASSES = 65535  # labels 0..65534 and an ignore value: what a 16-bit label PNG holds
MODEL_KEYS = ("num_classes", "in_channels", "backbone", "head", "aux_head", "classifier_dropout", "feature_upsample",
              "align_corners")


@dataclass(frozen=True)
class ComponentSpec:
    """A backbone or head by its registered name, with the keyword arguments the config gives it."""

    name: str  # a key of BACKBONES (or ``timm/<model>``) or HEADS
    options: Mapping[str, Any] = ReadOnlyDict()  # read-only; the constructor's keyword arguments

    def kwargs(self) -> dict[str, Any]:
        """The options as plain keyword arguments (fresh dicts and lists) for the constructor."""
        return thaw(self.options)


@dataclass(frozen=True)
class AuxHeadSpec:
    """The auxiliary FCN head (training only) on a backbone feature map."""

    feature: str | None  # the backbone feature map it reads (a ``feature_info`` name, checked at build)
    options: Mapping[str, Any] = ReadOnlyDict()  # AuxHead's keyword arguments (channels, dropout)


@dataclass(frozen=True)
class ModelSpec:
    """What a :class:`~atrous.models.segmentor.Segmentor` is built from; each field is a
    constructor argument (:func:`atrous.models.build.build_model`)."""

    num_classes: int  # classes the classifier scores (1 … MAX_CLASSES)
    backbone: ComponentSpec  # the feature extractor and its output stride
    head: ComponentSpec  # the context head on the backbone's last feature map
    aux_head: AuxHeadSpec | None = None  # an auxiliary head for the training loss; None: none
    in_channels: int | None = None  # image channels; None: the backbone's own (3), its first convolution untouched
    classifier_dropout: float = 0.0  # dropout before the 1×1 classifier, in [0, 1)
    feature_upsample: int = 1  # upsample the head's output by this factor before the classifier
    align_corners: bool = False  # of the bilinear upsampling of the logits to the input size

    @classmethod
    def from_mapping(cls, cfg: Any) -> ModelSpec:
        """The ``model`` section as a spec; :class:`ConfigError` naming the key, the value and
        what is expected for anything wrong."""
        check_mapping("model", cfg)
        check_keys("model", cfg, MODEL_KEYS)
        for key in ("num_classes", "backbone", "head"):
            if key not in cfg:
                raise ConfigError(f"model: missing required key {key!r}")
        check_value("model.num_classes", cfg["num_classes"], int)
        if not 1 <= cfg["num_classes"] <= MAX_CLASSES:
            raise ConfigError(f"model.num_classes: must be from 1 to {MAX_CLASSES} (label maps are 16-bit PNGs), "
                              f"got {cfg['num_classes']!r}")
        backbone = backbone_spec(cfg["backbone"])
        head = head_spec(cfg["head"])
        aux_head = aux_head_spec(cfg["aux_head"]) if cfg.get("aux_head") else None
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
        return cls(
            num_classes=cfg["num_classes"],
            backbone=backbone,
            head=head,
            aux_head=aux_head,
            in_channels=cfg.get("in_channels"),
            classifier_dropout=float(cfg.get("classifier_dropout", 0.0)),
            feature_upsample=int(cfg.get("feature_upsample", 1)),
            align_corners=bool(cfg.get("align_corners", False)),
        )

    def without_pretrained_backbone(self) -> ModelSpec:
        """The same architecture with ``backbone.pretrained: false``: for a model whose every
        weight comes from a checkpoint next, or whose parameters are only counted."""
        options = ReadOnlyDict({**self.backbone.options, "pretrained": False})
        return replace(self, backbone=replace(self.backbone, options=options))


def backbone_spec(cfg: Any) -> ComponentSpec:
    """``model.backbone``: a registered name (or ``timm/<model>``) and the options its class takes."""
    from .backbones import BACKBONES, backbone_entry, is_backbone_name

    spec = _component("model.backbone", cfg, BACKBONES, is_backbone_name)
    backbone_cls, fixed = backbone_entry(spec.name)
    options = dict(spec.options)
    check_component_keys(f"model.backbone ({spec.name})", options, backbone_cls, tuple(fixed))
    check_arguments("model.backbone", backbone_cls, options)
    return spec


def head_spec(cfg: Any) -> ComponentSpec:
    """``model.head``: a registered name, the options its class takes (those it derives from the
    backbone excepted) and the head's own value rules."""
    from .backbones import FeatureInfo
    from .heads import HEADS

    spec = _component("model.head", cfg, HEADS)
    head_cls = HEADS[spec.name]
    # the names of the arguments a head takes from its backbone (their values do not matter here)
    stand_in = SimpleNamespace(out_channels=1, output_stride=32, last_dilation=1, feature_info=[FeatureInfo("f", 1, 4)])
    derived = tuple(head_cls.backbone_arguments(stand_in))
    options = dict(spec.options)
    check_component_keys(f"model.head ({spec.name})", options, head_cls, derived)
    check_arguments("model.head", head_cls, options)
    head_cls.check_options("model.head", options)
    return spec


def aux_head_spec(cfg: Any) -> AuxHeadSpec:
    """``model.aux_head``: the feature map it reads and :class:`~atrous.models.heads.AuxHead`'s options."""
    from .heads import AuxHead

    check_mapping("model.aux_head", cfg)
    options = {k: v for k, v in cfg.items() if k != "feature"}
    check_component_keys("model.aux_head", options, AuxHead, ("in_channels", "num_classes"))
    check_arguments("model.aux_head", AuxHead, options)
    return AuxHeadSpec(cfg.get("feature"), freeze(options))


def check_component_keys(section: str, given: Mapping[str, Any], target: Any, fixed: tuple[str, ...] = ()) -> None:
    """The keys of a component's options must be ``target``'s keyword arguments, less ``fixed``
    (those the builder supplies); keys the target lists in ``removed_options`` are refused with
    what replaces them."""
    removed = getattr(target, "removed_options", {})  # a head's options of earlier versions
    if retired := sorted(key for key in given if key in removed):
        advice = dict.fromkeys(removed[key] for key in retired)  # each piece of advice once
        verb = "was" if len(retired) == 1 else "were"
        raise ConfigError(f"{section}: {', '.join(map(repr, retired))} {verb} removed: {'; '.join(advice)}")
    params = inspect.signature(target).parameters
    allowed = [p for p in params if p not in fixed and params[p].kind is not inspect.Parameter.VAR_KEYWORD]
    check_keys(section, given, allowed)


def _component(section: str, cfg: Any, registry: Mapping[str, Any], known: Any = None) -> ComponentSpec:
    if not isinstance(cfg, Mapping) or "name" not in cfg:
        raise ConfigError(f"{section}: needs a mapping with a 'name' key; names: {sorted(registry)}")
    options = dict(cfg)
    name = options.pop("name")
    if not (known(name) if known is not None else name in registry):
        extra = " or timm/<model>" if known is not None else ""
        raise ConfigError(f"{section}: unknown name {name!r}; choose from {sorted(registry)}{extra}")
    return ComponentSpec(name, freeze(options))
