"""The training loss: a weighted sum of pixel losses (:mod:`.loss_terms`) on the main logits,
plus the same sum on the auxiliary head's logits times ``aux_weight``.

``train.loss`` in a config is either

* a mapping of :class:`SegmentationLoss` options — ``{ohem_thresh: 0.7, aux_weight: 0.4,
  class_weights: [...]}`` is cross-entropy alone, as always; ``terms:`` lists the terms; or
* a list of terms, short for ``{terms: [...]}``: ``[{name: ce, weight: 1}, {name: dice, weight: 0.5}]``.

A term is ``{name: ce | focal | dice | tversky | lovasz, weight: 1.0, <the term's options>}``.
``class_weights`` weigh the terms that take them (ce, focal); ``ohem_thresh`` and
``ohem_min_kept`` are cross-entropy's. ``class_weights: median_frequency | enet`` (or
``auto``, median frequency) are computed from the training split before training
(:mod:`.class_weights`).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, check_keys, check_mapping, check_value, did_you_mean, thaw
from .loss_terms import LOSS_TERMS, CrossEntropyTerm, PixelLoss

WEIGHT_MODES = ("auto", "median_frequency", "enet")  # class_weights computed from the data


class SegmentationLoss(nn.Module):
    """Weighted sum of pixel losses over logits at label resolution (DeepLabv3 §4.1: labels are
    never downsampled); ignored pixels take part in no term.

    Args:
        ignore_index: label of unlabelled pixels.
        terms: ``[{name, weight, **options}]`` (see :data:`~.loss_terms.LOSS_TERMS`); default
            cross-entropy alone.
        ohem_thresh: cross-entropy with online hard-pixel mining keeps pixels whose true-class
            probability is below this threshold ...
        ohem_min_kept: ... but at least this many of the hardest pixels per batch.
        aux_weight: weight of the auxiliary head's loss.
        class_weights: per-class weights of the ce and focal terms (a list of numbers; the modes
            ``auto``/``median_frequency``/``enet`` are resolved into one before training).

    Shapes: logits ``(N, K, H, W)``, target ``(N, H, W)`` uint8 (the datasets' masks) or int64 → scalar.
    """

    def __init__(
        self,
        ignore_index: int = 255,
        *,
        terms: list[dict[str, Any]] | None = None,
        ohem_thresh: float | None = None,
        ohem_min_kept: int = 100_000,
        aux_weight: float = 0.4,
        class_weights: list[float] | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(class_weights, str):
            raise ConfigError(
                f"train.loss.class_weights: {class_weights!r} is computed from the training split by atrous fit; "
                "pass a list of numbers here"
            )
        self.ignore_index = ignore_index
        self.aux_weight = aux_weight
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights)  # in checkpoints (the terms hold it unsaved)
        self.terms = nn.ModuleList()
        self.term_weights: list[float] = []
        for spec in terms or [{"name": "ce"}]:
            options = dict(spec)
            name, weight = options.pop("name"), float(options.pop("weight", 1.0))
            cls, weighted = LOSS_TERMS[name]
            if cls is CrossEntropyTerm:
                options = {"ohem_thresh": ohem_thresh, "ohem_min_kept": ohem_min_kept, **options}
            self.terms.append(cls(weights, **options) if weighted else cls(**options))
            self.term_weights.append(weight)

    def pixel_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The weighted sum of the terms for one set of logits; ``target`` int64 with ignored pixels."""
        valid = target != self.ignore_index
        target = target.masked_fill(~valid, 0)
        total = logits.new_zeros(())
        for term, weight in zip(self.terms, self.term_weights, strict=True):
            if weight:
                total = total + weight * term(logits, target, valid)
        return total

    def forward(self, logits: torch.Tensor, target: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        target = target.long()  # masks travel as uint8 (an eighth of int64's bytes); cast once, on the device
        loss = self.pixel_loss(logits, target)
        if aux is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * self.pixel_loss(aux, target)
        return loss


def loss_options(cfg: Mapping[str, Any] | Sequence[Any] | None) -> dict[str, Any]:
    """``train.loss`` (a mapping of options or a list of terms) as :class:`SegmentationLoss`
    keyword arguments."""
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping):
        return thaw(cfg)
    return {"terms": thaw(cfg)}


def check_loss(cfg: Any) -> None:
    """Validate ``train.loss`` (see the module docstring); raises :class:`ConfigError`."""
    if isinstance(cfg, (list, tuple)):
        _check_terms(list(cfg), "train.loss")
        return
    check_mapping("train.loss", cfg)
    params = inspect.signature(SegmentationLoss).parameters
    options = [name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    check_keys("train.loss", cfg, options)
    hints = typing.get_type_hints(SegmentationLoss.__init__)
    for key, value in cfg.items():
        if key == "class_weights":
            _check_class_weights(value)
        elif key == "terms":
            _check_terms(value)
        else:
            check_value(f"train.loss.{key}", value, hints[key])


def _check_class_weights(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        if value not in WEIGHT_MODES:
            raise ConfigError(
                f"train.loss.class_weights: unknown mode {value!r}{did_you_mean(value, WEIGHT_MODES)}; "
                f"choose from {list(WEIGHT_MODES)} or give a list of numbers"
            )
        return
    if not isinstance(value, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ConfigError(
            f"train.loss.class_weights: expected a list of numbers or one of {list(WEIGHT_MODES)}, got {value!r}"
        )
    if any(v < 0 for v in value):
        raise ConfigError(f"train.loss.class_weights: weights must be >= 0, got {value!r}")


def _check_terms(terms: Any, section: str = "train.loss.terms") -> None:
    if not isinstance(terms, list) or not terms:
        raise ConfigError(
            f"{section}: expected a non-empty list like [{{name: ce, weight: 1}}, {{name: dice, weight: 0.5}}], "
            f"got {terms!r}"
        )
    for i, term in enumerate(terms):
        where = f"{section}[{i}]"
        check_mapping(where, term)
        name = term.get("name")
        if name not in LOSS_TERMS:
            raise ConfigError(
                f"{where}.name: unknown loss {name!r}{did_you_mean(name, LOSS_TERMS)}; choose from {list(LOSS_TERMS)}"
            )
        cls: type[PixelLoss] = LOSS_TERMS[name][0]
        params = inspect.signature(cls).parameters
        own = [p for p, spec in params.items() if spec.kind is inspect.Parameter.KEYWORD_ONLY]
        check_keys(f"{where} ({name})", term, ["name", "weight", *own])
        hints = typing.get_type_hints(cls.__init__)
        if "weight" in term:
            check_value(f"{where}.weight", term["weight"], float)
            if term["weight"] < 0:
                raise ConfigError(f"{where}.weight: must be >= 0, got {term['weight']!r}")
        for key in own:
            if key in term:
                check_value(f"{where}.{key}", term[key], hints[key])
