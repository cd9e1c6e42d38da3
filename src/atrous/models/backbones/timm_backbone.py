"""Any timm CNN with ``features_only`` as an atrous backbone: ``name: timm/<model>``.

timm (optional: ``pip install "atrous[timm]"``) builds the network; atrous declares its feature
maps and brings it to the output stride, by one of two methods, each proven before use:

* ``timm`` — timm's own ``output_stride`` argument, where it is right;
* ``atrous`` — :mod:`.regrid`, atrous' measured rule (per-side padding scaled with the rate,
  dilated average pools), where timm's is wrong (ConvNeXt's 2×2 downsampling, avg-down
  shortcuts, TensorFlow-style 'same' padding) or missing (GhostNet, VoVNet, DLA, ...).

The proof is :func:`.grid_check.grid_agreement`: the dilated network sampled on the strided
network's grid equals it (float64, random weights). Models of the verified table
(``docs/encoders.md``, :data:`.timm_families.VERIFIED`) are built with their recorded method;
any other model is checked when built (once per process) and refused, with the reason, when
neither method passes. A network is never silently misaligned.
"""

from __future__ import annotations

import functools
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import ConfigError, require_extra
from .base import Backbone, FeatureInfo, adapt_input_conv, check_output_stride
from .grid_check import grid_agreement
from .regrid import measure_geometry, regrid
from .timm_families import REFUSED, VERIFIED
from .weights import PretrainedWeightsError

TIMM_PREFIX = "timm/"


def import_timm():
    """timm, or one line saying how to install it."""
    return require_extra("timm", "timm", "a timm backbone")


def timm_family(model: str) -> str:
    """The timm module a model comes from (``convnext_tiny`` → ``convnext``)."""
    timm = import_timm()
    base = model.split(".")[0]
    if not timm.is_model(base):
        raise ConfigError(f"timm has no model {model!r}; `timm.list_models('*name*')` lists the names")
    return timm.models.model_entrypoint(base).__module__.rsplit(".", 1)[-1]


def _weights_overlay(model: str, pretrained: bool | str | os.PathLike | None) -> dict[str, Any]:
    """timm ``create_model`` arguments for ``pretrained`` (see :class:`TimmBackbone`)."""
    if pretrained is None or pretrained is False:
        return {"pretrained": False}
    if pretrained is not True:
        path = Path(os.fspath(pretrained)).expanduser()
        if not path.is_file():
            raise PretrainedWeightsError(f"pretrained={str(pretrained)!r} for timm/{model}: no such file")
        return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}
    timm = import_timm()
    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        raise PretrainedWeightsError(f"timm/{model} has no pretrained weights; use pretrained: false or a local file")
    if cfg.hf_hub_id:
        from huggingface_hub import constants, try_to_load_from_cache

        filename = cfg.hf_hub_filename or "model.safetensors"
        for name in (filename, "pytorch_model.bin"):
            cached = try_to_load_from_cache(cfg.hf_hub_id, name)
            if isinstance(cached, str):
                return {"pretrained": True, "pretrained_cfg_overlay": {"file": cached}}
        where = f"https://huggingface.co/{cfg.hf_hub_id}/resolve/main/{filename}"
        if not cfg.hf_hub_filename:
            where += " (older repositories: pytorch_model.bin)"
        cache = f"the Hugging Face cache ({constants.HF_HUB_CACHE})"
    else:
        where, cache = cfg.url, f"torch.hub's cache ({torch.hub.get_dir()}/checkpoints)"
    name = where.split(" ")[0].rsplit("/", 1)[-1]
    return {"pretrained": True, "_offline_hint": f"download {where} and pass `pretrained: /path/to/{name}`, "
            f"or run once where the hub is reachable (the file lands in {cache})"}


def _create(model: str, output_stride: int, in_channels: int, out_indices, weights: dict[str, Any], **extra) -> nn.Module:
    timm = import_timm()
    kwargs = {k: v for k, v in weights.items() if not k.startswith("_")}
    if output_stride != 32:
        kwargs["output_stride"] = output_stride
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    try:
        return timm.create_model(model, features_only=True, in_chans=in_channels, **kwargs, **extra)
    except (OSError, RuntimeError) as err:  # hub unreachable, file unreadable
        if kwargs.get("pretrained"):
            hint = weights.get("_offline_hint", "check the file")
            raise PretrainedWeightsError(f"timm weights for {model} could not be loaded ({type(err).__name__}): {hint}") from err
        raise


@functools.cache
def choose_method(model: str, output_stride: int, in_channels: int, out_indices: tuple[int, ...] | None) -> str:
    """``"timm"`` or ``"atrous"``: the first method whose network equals the strided one on the grid.

    Recorded for the verified table, measured (once per process) for any other model;
    raises :class:`ConfigError` with the reasons when neither is exact.
    """
    if output_stride == 32:
        return "timm"
    if (model, output_stride) in VERIFIED and out_indices is None:  # input channels do not change the geometry
        return VERIFIED[(model, output_stride)]
    family = timm_family(model)
    if family in REFUSED:
        raise ConfigError(f"timm/{model} cannot run at output stride {output_stride}: {REFUSED[family]}")
    strided = _create(model, 32, in_channels, out_indices, {"pretrained": False})
    reasons = []
    for method in ("timm", "atrous"):
        try:
            dilated = build_dilated(model, method, output_stride, in_channels, out_indices, {"pretrained": False})
        except (AssertionError, ConfigError, RuntimeError, TypeError, ValueError) as err:
            reasons.append(f"{method}: {str(err).strip() or type(err).__name__}")
            continue
        agreement = grid_agreement(strided, dilated, output_stride, in_channels=in_channels)
        if agreement.verdict == "exact":
            return method
        reasons.append(f"{method}: {agreement.verdict} (relative difference {agreement.relative_difference:.1e})")
    raise ConfigError(
        f"timm/{model} cannot be dilated to output stride {output_stride} without misaligning it "
        f"({'; '.join(reasons)}); use output_stride: 32 or another encoder (atrous encoders --table)"
    )


def build_dilated(model: str, method: str, output_stride: int, in_channels: int, out_indices,
                  weights: dict[str, Any], **extra) -> nn.Module:
    """The timm feature network at ``output_stride`` by ``method`` (``timm`` or ``atrous``)."""
    if method == "timm":
        return _create(model, output_stride, in_channels, out_indices, weights, **extra)
    net = _create(model, 32, in_channels, out_indices, weights, **extra)
    if output_stride != 32:
        regrid(net, measure_geometry(net, in_channels), output_stride)
    return net


class TimmBackbone(Backbone):
    """A timm CNN (``features_only``) at output stride 8, 16 or 32.

    Args:
        model: timm model name (``convnext_tiny``, ``resnet50d``, ``efficientnet_b0``,
            ``convnext_tiny.fb_in22k``); the config name is ``timm/<model>``.
        output_stride: 8, 16 or 32.
        pretrained: ``False``; ``True`` for timm's default weights, used from the local Hugging
            Face / torch.hub cache, downloaded if missing (offline: one line naming the file and
            where to put it); or a path to a weight file timm can load.
        frozen: freeze parameters and BatchNorm statistics.
        in_channels: input channels (timm adapts pretrained first-layer weights, ``in_chans``).
        out_indices: which of timm's feature maps to return (default: all).
        drop_path_rate: stochastic depth, passed to timm when given.

    Features are named after timm's modules (``layer1``, ``stages_0``, ``blocks_1``).
    Shapes: ``(N, in_channels, H, W)`` → last map ``(N, C, ⌈H/os⌉, ⌈W/os⌉)``.
    """

    def __init__(
        self,
        model: str,
        *,
        output_stride: int = 16,
        pretrained: bool | str | None = False,
        frozen: bool = False,
        in_channels: int = 3,
        out_indices: list[int] | None = None,
        drop_path_rate: float | None = None,
    ) -> None:
        super().__init__()
        check_output_stride(output_stride)
        self.model_name = model
        self._in_channels = in_channels
        self.out_indices = None if out_indices is None else tuple(int(i) for i in out_indices)
        self._extra = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
        timm_family(model)  # a clear error for an unknown name, before anything is built
        self.method = choose_method(model, output_stride, in_channels, self.out_indices)
        self.net = build_dilated(model, self.method, output_stride, in_channels, self.out_indices,
                                 _weights_overlay(model, pretrained), **self._extra)
        self._declare(output_stride)
        if frozen:
            self.freeze()

    def _declare(self, output_stride: int) -> None:
        info = self.net.feature_info
        names = [n.replace(".", "_") for n in info.module_name()]
        strides = [min(r, output_stride) for r in info.reduction()]
        if strides[-1] != output_stride:
            raise ConfigError(f"timm/{self.model_name}'s last feature map has stride {strides[-1]}, not {output_stride}: "
                              "output_stride needs a network whose last map is at stride 32 (check out_indices)")
        self.feature_info = [FeatureInfo(n, c, s) for n, c, s in zip(names, info.channels(), strides, strict=True)]
        self._names = names
        self._last_dilation = 32 // output_stride

    @property
    def in_channels(self) -> int:
        """Channels of the input image (``in_channels`` / ``model.in_channels``)."""
        return self._in_channels

    def set_in_channels(self, in_channels: int) -> None:
        """Rebuild the network for ``in_channels``-channel images; every weight moves over, the
        first convolution's adapted by :func:`~.base.adapt_input_conv` (timm's rule)."""
        if in_channels < 1:
            raise ConfigError(f"model.in_channels: must be >= 1, got {in_channels!r}")
        if in_channels == self._in_channels:
            return
        stride = self.feature_info[-1].stride
        net = build_dilated(self.model_name, self.method, stride, in_channels, self.out_indices, {"pretrained": False},
                            **self._extra)
        state = self.net.state_dict()
        first = next(k for k, v in state.items() if v.ndim == 4 and v.shape[1] == self._in_channels)
        state[first] = adapt_input_conv(in_channels, state[first]) if self._in_channels == 3 else net.state_dict()[first]
        net.load_state_dict(state)
        net.train(self.net.training)
        if self.frozen:
            for p in net.parameters():
                p.requires_grad_(False)
        self.net, self._in_channels = net, in_channels

    def set_output_stride(self, output_stride: int) -> None:
        """Rebuild the network at ``output_stride`` and move every weight into it (same keys)."""
        check_output_stride(output_stride)
        method = choose_method(self.model_name, output_stride, self.in_channels, self.out_indices)
        net = build_dilated(self.model_name, method, output_stride, self.in_channels, self.out_indices,
                            {"pretrained": False}, **self._extra)
        net.load_state_dict(self.net.state_dict())
        net.train(self.net.training)
        if self.frozen:
            for p in net.parameters():
                p.requires_grad_(False)
        self.net, self.method = net, method
        self._declare(output_stride)
        self.train(self.training)

    def _features(self, x: torch.Tensor, keep: frozenset[str] | None = None) -> OrderedDict[str, torch.Tensor]:
        maps = self.net(x)
        if isinstance(maps, dict):
            maps = list(maps.values())
        return OrderedDict((n, m) for n, m in zip(self._names, maps, strict=True) if keep is None or n in keep)
