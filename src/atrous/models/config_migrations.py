"""Stored configs of earlier versions, in the current format: checkpoints keep loading.

A checkpoint stores the experiment config it was trained or converted with
(``hyper_parameters.config``). :func:`atrous.models.checkpoint.checkpoint_config` passes that
config through :func:`migrate_config` before anything builds from it, so a file written by an
earlier version of atrous (a run's checkpoint, a converted file, the published-weights cache)
loads as it did: the network built computes bit for bit what the old code computed. The file
itself is never rewritten, and the config returned is in the current format only. A stored
config that no current config expresses is refused with one :class:`CheckpointError` naming
the file, the options and the way out (``--config`` with a current config).

Migrations:

* **DenseASPP head options** removed when the head became the paper's pre-activation layer
  with the official model as one variant (``official: true`` on the head; the official first
  block's in-place ReLU became the backbone's: ``official_layout`` ends in ``relu5``):
  ``preactivation``, ``first_input_norm``, ``input_relu``, ``conv_bias``, ``concat_order`` and
  ``bn_momentum`` (:data:`DenseASPPHead.removed_options`). See :func:`migrate_denseaspp_head`.

A stored config without the removed options is taken as current: one that set a DenseNet's
``official_layout`` with none of them (no packaged config did) now gets ``relu5``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from ..errors import CheckpointError
from .heads.denseaspp import OFFICIAL_LAYERS, PAPER_LAYERS, DenseASPPHead

# The old layer options → the LayerSettings field each one set; their old defaults are
# PAPER_LAYERS' values (then ``input_first``, no biases, momentum 0.1, BN before the first layer).
_CONCAT_ORDERS = {"input_first": False, "new_first": True}  # concat_order → LayerSettings.new_first
_SETTING_FLAGS = ("first_input_norm", "conv_bias", "bn_momentum")  # same names as the fields
# The backbone feature that official_layout's relu5 rectifies (it needs all four blocks).
_RECTIFIED_FEATURE = "block4"


class NotExpressible(ValueError):
    """A stored config of an earlier version that no current config builds exactly."""


def migrate_denseaspp_head(model: Mapping[str, Any]) -> dict[str, Any]:
    """A ``model`` section whose DenseASPP head has options of an earlier version, in the
    current format; other sections are returned as they are (a copy).

    The old head ran ``relu(x)`` on its input when ``input_relu`` was set; the old backbone's
    ``official_layout`` ended in ``norm5``. Now ``official_layout`` ends in that ReLU (``relu5``)
    and the head never rectifies its input, so ``input_relu`` must equal ``official_layout``,
    with nothing between the two (no ``feature_upsample``: the old head rectified the upsampled
    features) and no auxiliary head on the rectified feature. The four layer options, missing
    ones at their old defaults, must be :data:`PAPER_LAYERS` (dropped) or :data:`OFFICIAL_LAYERS`
    (``official: true``). ``preactivation`` must be true (post-activation layers were removed).

    Raises:
        NotExpressible: why no current config builds the old network exactly.
    """
    head = dict(model["head"])
    old = {key: head.pop(key) for key in DenseASPPHead.removed_options if key in head}
    if not old:
        return dict(model)
    if "official" in head:
        raise NotExpressible("it also sets the current `official`, so it is neither format")
    if not old.get("preactivation", True):
        raise NotExpressible("post-activation (conv-BN-ReLU) layers were removed")
    order = old.get("concat_order", "input_first")
    if order not in _CONCAT_ORDERS:
        raise NotExpressible(f"concat_order must have been one of {sorted(_CONCAT_ORDERS)}")
    settings = dataclasses.replace(
        PAPER_LAYERS, new_first=_CONCAT_ORDERS[order], **{key: old[key] for key in _SETTING_FLAGS if key in old}
    )
    if settings not in (PAPER_LAYERS, OFFICIAL_LAYERS):
        raise NotExpressible(
            "its layer options are neither the paper's (the old defaults) nor the official code's "
            "(first_input_norm: false, conv_bias: true, bn_momentum: 0.0003, concat_order: new_first, "
            "together now `official: true`)"
        )
    if settings == OFFICIAL_LAYERS:
        head["official"] = True
    backbone = model.get("backbone")
    relu5 = isinstance(backbone, Mapping) and bool(backbone.get("official_layout", False))
    if bool(old.get("input_relu", False)) != relu5:
        raise NotExpressible(
            "the backbone's `official_layout` now ends in a ReLU (relu5) that this network did not have"
            if relu5
            else "input_relu: true is now the ReLU at the end of a DenseNet's `official_layout`, which this backbone does not set"
        )
    if relu5 and model.get("feature_upsample", 1) != 1:
        raise NotExpressible("its head rectified the upsampled features; relu5 rectifies them before feature_upsample")
    aux = model.get("aux_head")
    if relu5 and isinstance(aux, Mapping) and aux.get("feature") == _RECTIFIED_FEATURE:
        raise NotExpressible(f"its aux_head read {_RECTIFIED_FEATURE} before the ReLU that relu5 now applies")
    return {**model, "head": head}


def migrate_config(config: Mapping[str, Any], source: str | os.PathLike) -> dict[str, Any]:
    """The experiment ``config`` stored in checkpoint ``source``, in the current format (a copy;
    ``config`` is not changed). See the module docstring.

    Raises:
        CheckpointError: the stored config cannot be expressed in the current format; the
            message names ``source``, the options and ``--config``.
    """
    out = dict(config)
    model = out.get("model")
    head = model.get("head") if isinstance(model, Mapping) else None
    if not isinstance(head, Mapping) or head.get("name") != "denseaspp":
        return out
    try:
        out["model"] = migrate_denseaspp_head(model)
    except NotExpressible as err:
        given = ", ".join(f"{key}: {json.dumps(head[key])}" for key in DenseASPPHead.removed_options if key in head)
        raise CheckpointError(
            f"{source}: its stored config sets DenseASPP head options of an earlier version ({given}), "
            f"and no current config builds that network exactly: {err}. Pass --config with a current "
            "config to load its weights anyway (its outputs then differ from the stored network's)"
        ) from err
    return out
