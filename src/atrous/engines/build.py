"""``build_engine``: a segmentor and :class:`EngineOptions` → an :class:`Engine` to predict with.

Exported engines are built once per model, output stride, engine, precision and library
versions and kept in the engine cache (:mod:`atrous.engines.cache`); int8 engines load what
``atrous quantize`` wrote (:mod:`atrous.engines.quantize`) after checking it was quantized from
this very model.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.metadata
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..devices import resolve_device
from ..errors import DeviceError, UserError, require_extra
from .base import Engine, EngineOptions
from .cache import (
    CacheEntry,
    cached_build,
    default_cache_dir,
    discard_entry,
    engine_key,
    model_digest,
)
from .exported import OnnxRuntimeEngine, OpenVINOEngine, onnxruntime_providers
from .precision import AUTO, choose_precision
from .torch_engine import TorchEngine

# The distributions whose versions key an engine's cache entry, the module it imports, its extra.
ENGINE_LIBRARIES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",), "tensorrt": ("onnxruntime-gpu", "onnxruntime")}
ENGINE_MODULES = {"onnxruntime": ("onnxruntime", "export"), "openvino": ("openvino", "openvino"),
                  "tensorrt": ("onnxruntime", "export")}


def build_engine(model: nn.Module, options: EngineOptions | None = None, device: str | torch.device = "cpu",
                 *, log: bool = True) -> Engine:
    """Wrap ``model`` (a :class:`~atrous.models.Segmentor`, put in eval mode) in the engine
    ``options`` ask for, on ``device``.

    The torch engine keeps ``model`` (moved to ``device`` and its memory format, and re-dilated
    when a strategy switches the output stride); exported
    engines export a copy at ``options.output_stride`` (default: the model's) and never change
    ``model``. ``log`` prints one line to stderr when an engine is built or found in the cache.
    """
    options = options or EngineOptions()
    if options.engine == "openvino" and str(device) not in ("cpu", "auto") and torch.device(device).type != "cpu":
        raise DeviceError(f"--engine openvino runs on the CPU here, not {device}; use --device cpu")
    device = resolve_device(device)
    if options.engine == "openvino":
        device = torch.device("cpu")  # --device auto: OpenVINO's CPU plugin
    if options.precision == AUTO:
        choice = choose_precision(options.engine, device)
        options = replace(options, precision=choice.precision, precision_reason=choice.reason)
    model = model.eval()
    if options.engine == "torch":
        return TorchEngine(model, options, device)
    if options.output_stride is not None and options.output_stride != model.output_stride:
        model = copy.deepcopy(model)
        model.set_output_stride(options.output_stride)
    info = {"num_classes": model.num_classes, "output_stride": model.output_stride,
            "in_channels": getattr(model, "in_channels", 3),
            "align_corners": getattr(model, "align_corners", False), "options": options}
    if options.precision == "int8":
        from .quantize import load_quantized

        return load_quantized(model, options, device, info)
    require_extra(*ENGINE_MODULES[options.engine], f"--engine {options.engine}")
    # Without the cache the entry is removed on return: engines keep nothing more on disk.
    compiled = "entry" if options.use_cache else None
    with _cache_root(options) as root:
        entry = exported_entry(model, options, root, log=log)
        try:
            return engine_from_entry(entry, options, device, info, compiled_cache=compiled)
        except UserError:
            raise
        except Exception as err:  # files of a found entry that no longer load: damaged on disk
            if entry.built:
                raise
            print(f"atrous: the cached engine {entry.path} does not load ({type(err).__name__}); rebuilding it",
                  file=sys.stderr)
            discard_entry(entry.path)
            entry = exported_entry(model, options, root, log=log)
            return engine_from_entry(entry, options, device, info, compiled_cache=compiled)


def engine_from_entry(entry: CacheEntry, options: EngineOptions, device: torch.device, info: dict[str, Any],
                      *, compiled_cache: Path | None | str = "entry") -> Engine:
    """Open the engine whose files ``entry`` holds (a cache entry or a quantized folder);
    OpenVINO keeps its compiled blobs in ``compiled_cache`` (default: inside the entry)."""
    folder = entry.path / ("compiled" if options.engine == "openvino" else "tensorrt")
    cache = folder if compiled_cache == "entry" else compiled_cache
    if options.engine == "openvino":
        return OpenVINOEngine(entry.file("openvino"), compiled_cache=cache, **info)
    trt_cache = cache if options.engine == "tensorrt" else None
    if trt_cache is not None:
        Path(trt_cache).mkdir(exist_ok=True)
    providers = onnxruntime_providers(options, device, trt_cache)
    return OnnxRuntimeEngine(entry.file("onnx"), providers=providers, name=options.engine, **info)


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


def library_versions(engine: str) -> dict[str, str]:
    versions = {"torch": torch.__version__}
    for name in ("onnx", "onnxscript", *ENGINE_LIBRARIES.get(engine, ())):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def exported_entry(model: nn.Module, options: EngineOptions, root: Path, *, log: bool = True) -> CacheEntry:
    """The cache entry holding ``model``'s files for ``options.engine`` (built if missing).

    The ONNX export (dynamic in batch, height and width: one entry serves every input size) is an
    entry of its own, ``onnx-…``, which onnxruntime and TensorRT run directly and OpenVINO
    converts into its ``openvino-…`` entry: a model is exported once for all engines.
    """
    digest = model_digest(model)
    onnx = _entry(root, digest, "onnx", {"output_stride": model.output_stride, "versions": library_versions("onnx")},
                  lambda folder: export_onnx(model, folder), log=log)
    if options.engine != "openvino":
        return onnx
    return _entry(root, digest, "openvino", {"output_stride": model.output_stride, "onnx": onnx.path.name,
                                             "versions": library_versions("openvino")},
                  lambda folder: {"openvino": onnx_to_openvino(onnx.file("onnx"), folder / "model.xml")}, log=log)


def _entry(root: Path, digest: str, kind: str, fields: dict[str, Any], build: Any, *, log: bool) -> CacheEntry:
    fields = {"kind": kind, "format": 1, **fields}
    name = f"{kind}-{engine_key(digest, fields)}"
    started = time.perf_counter()

    def announced(folder: Path) -> dict[str, str]:
        if log:
            print(f"atrous: building the {kind} engine files (once; cached in {root})", file=sys.stderr)
        return build(folder)

    entry = cached_build(root, name, announced, describe={**fields, "model_sha256": digest})
    if log:
        what = "built" if entry.built else "found in the cache"
        print(f"atrous: {kind} {what} ({time.perf_counter() - started:.1f} s): {entry.path}", file=sys.stderr)
    return entry


def export_onnx(model: nn.Module, folder: Path) -> dict[str, str]:
    """``model.onnx`` in ``folder``: the dynamic export (:func:`atrous.engines.export.export_model`)."""
    from .export import export_model

    side = max(64, 8 * int(model.output_stride))  # the example's size; the graph stays dynamic
    export_model(model, folder / "model.onnx", "onnx", image_size=(side, side), verify=False)
    return {"onnx": "model.onnx"}


def onnx_to_openvino(onnx_path: Path, xml: Path) -> str:
    """Convert an ONNX file to OpenVINO IR beside it, weights kept in fp32; the xml's name."""
    ov = require_extra("openvino", "openvino", "the OpenVINO engine")
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml.name
