"""Start a model from another model's weights: fine-tuning onto a new label set or new inputs.

:func:`load_for_finetuning` loads every tensor of a checkpoint into a model built for another
task, where three things may differ:

* the class list — the layers with one output per class (:meth:`Segmentor.class_layers`: the
  classifier and the auxiliary classifier) keep their fresh initialisation; with
  ``match_classes`` the rows of classes whose names both label spaces share are copied (COCO-VOC's
  ``person`` into the user's ``person``);
* the input channels — the first convolution's weights are adapted to ``model.in_channels`` by
  :func:`~atrous.models.backbones.base.adapt_input_conv` (timm's rule);
* the auxiliary head — present in the checkpoint but not in the model (dropped), or the reverse
  (initialised).

One log line names the tensors that were not loaded as stored. Any other difference (another
backbone or head) stays the clear :class:`CheckpointError` of :func:`load_state`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CheckpointError
from .backbones.base import adapt_input_conv
from .checkpoint import load_state, model_state
from .segmentor import Segmentor

log = logging.getLogger(__name__)


def load_for_finetuning(
    model: Segmentor,
    ckpt: Mapping[str, Any],
    source: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    match_classes: bool = False,
) -> list[str]:
    """Load ``ckpt``'s weights into ``model`` (see the module docstring); returns the names of
    the tensors that were re-initialised or adapted rather than loaded as stored.

    ``class_names``: the model's classes, in output order; the checkpoint's are its stored
    ``hyper_parameters.class_names``. ``match_classes`` needs both.
    """
    state = model_state(ckpt)
    target = model.state_dict()
    old_names = (ckpt.get("hyper_parameters") or {}).get("class_names")
    if match_classes and not (old_names and class_names):
        raise CheckpointError(
            f"{source}: train.init_match_classes needs the class names of the checkpoint and of the dataset, "
            f"but {'the checkpoint stores none' if not old_names else 'the dataset has none'}; set it to false"
        )
    changed: list[str] = []
    reused: list[str] = []
    conv = f"backbone.{model.backbone.input_conv_name}.weight"
    if conv in state and conv in target and state[conv].shape != target[conv].shape:
        if state[conv].shape[0] != target[conv].shape[0] or state[conv].shape[2:] != target[conv].shape[2:]:
            raise CheckpointError(f"{source} was saved from a different model than this config builds ({conv}: "
                                  f"{tuple(state[conv].shape)} vs {tuple(target[conv].shape)}).")
        state[conv] = adapt_input_conv(target[conv].shape[1], state[conv])
        changed.append(conv)
    if model.aux_head is None:  # the model has no auxiliary head: the checkpoint's is not needed
        dropped = [key for key in state if key.startswith("aux_head.")]
        for key in dropped:
            del state[key]
        if dropped:
            changed.append(f"aux_head.* (dropped: {len(dropped)} tensors)")
    else:
        for key in target:
            if key.startswith("aux_head.") and key not in state:
                state[key] = target[key]
                changed.append(key)
    for prefix in model.class_layers():
        for key in (f"{prefix}.weight", f"{prefix}.bias"):
            if key not in state or key not in target or key in changed:
                continue
            old, new = state[key], target[key]
            same_classes = old.shape[0] == new.shape[0] and (not match_classes or list(old_names) == list(class_names))
            if same_classes:
                continue
            if old.shape[1:] != new.shape[1:]:
                raise CheckpointError(f"{source} was saved from a different model than this config builds ({key}: "
                                      f"{tuple(old.shape)} vs {tuple(new.shape)}).")
            state[key] = new.clone()
            changed.append(key)
            if match_classes:
                for row, name in enumerate(class_names):
                    if name in old_names:
                        state[key][row] = old[list(old_names).index(name)]
                        if name not in reused:
                            reused.append(name)
    load_state(model, {"state_dict": {f"model.{k}": v for k, v in state.items()}}, source)
    if changed:
        count = f"{len(old_names)} → {len(class_names)} classes; " if old_names and class_names else ""
        rows = ""
        if match_classes:
            rows = f"; rows copied for the same-named {', '.join(reused)}" if reused else "; no class name in common"
        log.warning("fine-tuning from %s (%sthe rest loaded): re-initialised or adapted %s%s",
                    source, count, ", ".join(changed), rows)
    return changed

