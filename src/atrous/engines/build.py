"""``build_engine``: a segmentor and :class:`EngineOptions` → an :class:`Engine` to predict with.

What each engine supports and where its code lives is its record in
:mod:`atrous.engines.registry`. Exported engines are built once per model, output stride, engine,
precision and library versions and kept in the engine cache (:mod:`atrous.engines.cache`,
:mod:`atrous.engines.files`); int8 engines load what ``atrous quantize`` wrote
(:mod:`atrous.engines.int8`) after checking it was quantized from this very model.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import resolve_device
from ..errors import DeviceError, UserError, require_extra
from .base import Engine, EngineOptions
from .cache import default_cache_dir, discard_entry
from .files import exported_entry, runnable_file
from .int8 import load_quantized
from .precision import AUTO, choose_precision, choose_tapwise
from .registry import EngineSpec, engine_spec


def build_engine(model: nn.Module, options: EngineOptions | None = None, device: str | torch.device = "cpu",
                 *, log: bool = True) -> Engine:
    """Wrap ``model`` (a :class:`~atrous.models.Segmentor`, put in eval mode) in the engine
    ``options`` ask for, on ``device``, at ``options.output_stride`` (default: the model's).

    The torch engine keeps ``model`` (moved to ``device`` and its memory format); at another
    output stride it runs a re-dilated copy. Exported engines export a copy at that stride. Either
    way ``model``'s output stride is never changed. ``log`` prints one line to stderr when an
    engine is built or found in the cache.
    """
    options = options or EngineOptions()
    spec = engine_spec(options.engine)
    device = _engine_device(spec, device)
    if options.precision == AUTO:
        choice = choose_precision(options.engine, device)
        options = replace(options, precision=choice.precision, precision_reason=choice.reason)
    model = model.eval()
    if options.output_stride is not None and options.output_stride != model.output_stride:
        model = copy.deepcopy(model)
        model.set_output_stride(options.output_stride)
    if not spec.exports:
        return spec.implementation().open_engine(model, options, device, {})
    info = {"num_classes": model.num_classes, "output_stride": model.output_stride,
            "in_channels": getattr(model, "in_channels", 3),
            "align_corners": getattr(model, "align_corners", False), "options": options}
    if options.precision == "int8":
        return load_quantized(model, options, device, info)
    require_extra(spec.package, spec.extra, f"--engine {spec.name}")
    # OpenVINO in bf16 on an AMX CPU runs a graph with the wide atrous convolutions tap-wise.
    tapwise = choose_tapwise(spec.name, device, options.precision)
    with _cache_root(options) as root:
        entry = exported_entry(model, spec, root, log=log, tapwise=tapwise)
        try:
            return _open(spec, entry, options, device, info)
        except UserError:
            raise
        except Exception as err:  # files of a found entry that do not load: damaged on disk
            if entry.built:
                raise
            print(f"atrous: the cached engine {entry.path} does not load ({type(err).__name__}); rebuilding it",
                  file=sys.stderr)
            discard_entry(entry.path)
            entry = exported_entry(model, spec, root, log=log, tapwise=tapwise)
            return _open(spec, entry, options, device, info)


def _engine_device(spec: EngineSpec, device: str | torch.device) -> torch.device:
    """``device`` for ``spec``'s engine: ``auto`` is the engine's first device type where it
    runs on one type only; a device it does not run on is refused."""
    if str(device) == "auto" and len(spec.devices) == 1:
        return torch.device(spec.devices[0])
    requested = torch.device(device) if str(device) != "auto" else None
    if requested is not None and requested.type not in spec.devices:
        where = {"cpu": "the CPU", "cuda": "a CUDA device"}
        raise DeviceError(f"--engine {spec.name} runs on {where.get(spec.devices[0], spec.devices[0])} here, "
                          f"not {device}; use --device {spec.devices[0]}")
    return resolve_device(device)


def _open(spec: EngineSpec, entry: Any, options: EngineOptions, device: torch.device, info: dict[str, Any]) -> Engine:
    # Without the cache the entry is removed on return: the engine keeps nothing compiled on disk.
    return spec.implementation().open_engine(runnable_file(entry, spec), options, device, info,
                                              cache_folder=entry.path if options.use_cache else None)


@contextlib.contextmanager
def _cache_root(options: EngineOptions) -> Iterator[Path]:
    """The cache folder of ``options``; without the cache a temporary one, removed on exit (the
    engine has read its files by then: sessions and compiled models live in memory)."""
    if options.use_cache:
        yield Path(options.cache_dir) if options.cache_dir else default_cache_dir()
        return
    tmp = Path(tempfile.mkdtemp(prefix="atrous-engine-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
