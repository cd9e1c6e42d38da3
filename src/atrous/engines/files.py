"""The files an exported engine runs, kept in the engine cache (:mod:`atrous.engines.cache`).

The ONNX export (dynamic in batch, height and width: one entry serves every input size) is an
entry of its own, ``onnx-…``, which the engines that run ONNX open directly; an engine that
converts the export into files of its own (its record's ``converts``, e.g. OpenVINO's IR) keeps
them in an entry named after it. A model is exported once for all engines, and once more with
its wide atrous convolutions tap-wise for OpenVINO's bf16 on AMX (:func:`atrous.engines.precision.choose_tapwise`).
Each entry's key hashes the model, its output stride, the tap-wise rule if any and the versions
of the libraries involved.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.tapwise import TapwiseRule, tapwise_applied
from .cache import CacheEntry, cached_build, engine_key, model_digest
from .registry import EngineSpec


def library_versions(spec: EngineSpec | None) -> dict[str, str]:
    """torch's, onnx's and the engine's library versions (``None``: the ONNX export's only)."""
    versions = {"torch": torch.__version__}
    for name in ("onnx", "onnxscript", *(spec.versions if spec else ())):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def onnx_entry(model: nn.Module, root: Path, *, log: bool = True, tapwise: TapwiseRule | None = None) -> CacheEntry:
    """The cache entry holding ``model``'s ONNX export (exported if missing), with the atrous
    convolutions ``tapwise`` selects exported tap-wise (:mod:`atrous.models.tapwise`; part of the key)."""
    fields: dict[str, Any] = {"output_stride": model.output_stride, "versions": library_versions(None)}
    if tapwise is not None:
        fields["tapwise"] = [list(pair) for pair in tapwise]
    return _entry(root, model_digest(model), "onnx", fields, lambda folder: export_onnx(model, folder, tapwise), log=log)


def exported_entry(model: nn.Module, spec: EngineSpec, root: Path, *, log: bool = True,
                   tapwise: TapwiseRule | None = None) -> CacheEntry:
    """The cache entry holding the files ``spec``'s engine runs for ``model`` (built if missing):
    the ONNX export (``tapwise``: see :func:`onnx_entry`), or the engine's conversion of it."""
    onnx = onnx_entry(model, root, log=log, tapwise=tapwise)
    if not spec.converts:
        return onnx
    convert = spec.implementation().convert_onnx
    return _entry(root, model_digest(model), spec.name,
                  {"output_stride": model.output_stride, "onnx": onnx.path.name, "versions": library_versions(spec)},
                  lambda folder: convert(onnx.file("onnx"), folder), log=log)


def runnable_file(entry: CacheEntry, spec: EngineSpec) -> Path:
    """The file of ``entry`` that ``spec``'s engine opens."""
    return entry.file(spec.name if spec.converts else "onnx")


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


def export_onnx(model: nn.Module, folder: Path, tapwise: TapwiseRule | None = None) -> dict[str, str]:
    """``model.onnx`` in ``folder``: the dynamic export (:func:`atrous.engines.export.export_model`),
    the convolutions ``tapwise`` selects tap-wise (the model is left as it was)."""
    from .export import export_model

    side = max(64, 8 * int(model.output_stride))  # the example's size; the graph stays dynamic
    with tapwise_applied(model, tapwise):
        export_model(model, folder / "model.onnx", "onnx", image_size=(side, side), verify=False)
    return {"onnx": "model.onnx"}
