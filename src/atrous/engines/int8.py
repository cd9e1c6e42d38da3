"""int8 models: quantize a segmentor for an engine with calibration images into a folder, and
load that folder as an engine.

Each engine that runs int8 (its record in :mod:`atrous.engines.registry`) quantizes in its own
module (``quantize_int8``):

* ``openvino``: NNCF's ``nncf.quantize`` on the OpenVINO IR (``PERFORMANCE`` preset: symmetric
  int8 weights and activations, per-channel weights, what the CPU plugin's VNNI/AVX2 kernels
  take), statistics from the calibration images.
* ``onnxruntime``: ``onnxruntime.quantization.quantize_static`` on the ONNX export (QDQ format,
  per-channel int8 weights, uint8 activations, min-max calibration), after onnxruntime's
  ``quant_pre_process`` (shape inference and graph clean-up).

The folder (``atrous quantize --output DIR``)::

    quantization.json   engine, files and the sha256 of each, the fp32 model's sha256
                        (architecture + weights), output stride, classes, calibration (split,
                        images, seed), library versions
    model_fp32.onnx     the export the quantizer started from
    model_int8.xml/.bin (openvino) or model_int8.onnx (onnxruntime)
    report.json         written by ``atrous quantize`` (:mod:`atrous.deploy.int8_report`)

``--precision int8 --quantized DIR`` loads it (:func:`load_quantized`) after checking that the
checkpoint builds the very model it was quantized from and that every file still has the sha256
recorded when it was written (a changed file is refused). The files are written into a temporary
sibling folder first (``.<name>.atrous-tmp-<host>-<pid>-…``, removed by the next run if its
writer was killed) and moved in, ``quantization.json`` last. ``--overwrite`` moves the outputs of
the earlier ``atrous quantize`` into ``DIR/replaced-<UTC time>/`` first
(:func:`atrous.io.move_aside`); other files in ``DIR`` stay where they are.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, InputError, OutputExistsError, require_extra
from ..io import (
    changed_files,
    file_digests,
    move_aside,
    output_folder,
    remove_orphaned_temporaries,
    temporary_prefix,
)
from .base import Engine, EngineOptions
from .cache import default_cache_dir, model_digest
from .files import library_versions, onnx_entry
from .registry import QUANTIZE_ENGINES, engine_spec

MANIFEST = "quantization.json"
REPORT = "report.json"  # atrous quantize's evaluation of the folder (atrous.deploy.int8_report)


def quantize_model(
    model: nn.Module,
    engine: str,
    calibration: Iterable[torch.Tensor],
    output: str | os.PathLike,
    *,
    num_images: int,
    calibration_info: dict[str, Any] | None = None,
    overwrite: bool = False,
    cache_dir: Path | None = None,
) -> Path:
    """Quantize ``model`` for ``engine`` with ``calibration`` batches ``(1, 3, h, w)`` (normalised
    as in evaluation; the first ``num_images`` are used) and write the folder ``output``. The
    fp32 ONNX export comes from the engine cache ``cache_dir`` (default: the user's)."""
    if engine not in QUANTIZE_ENGINES:
        raise InputError(f"--engine {engine}: atrous quantizes for {list(QUANTIZE_ENGINES)}")
    if num_images < 1:
        raise InputError(f"--num-images must be at least 1, got {num_images}")
    spec = engine_spec(engine)
    require_extra(spec.int8_package, spec.extra, f"quantizing for {engine}")
    output = Path(output)
    check_quantize_output(output, overwrite=overwrite)
    model = model.eval()
    images = [x.detach().float().cpu() for x in itertools.islice(calibration, num_images)]
    if not images:
        raise InputError("the calibration split has no images")
    output_folder(output.parent)
    remove_orphaned_temporaries(output.parent)
    tmp = Path(tempfile.mkdtemp(prefix=temporary_prefix(output), dir=output.parent))
    try:
        onnx = onnx_entry(model, cache_dir or default_cache_dir())
        shutil.copyfile(onnx.file("onnx"), tmp / "model_fp32.onnx")
        files = spec.implementation().quantize_int8(tmp / "model_fp32.onnx", images, tmp)
        manifest = {
            "engine": engine, "files": {"fp32": "model_fp32.onnx", **files},
            "model_sha256": model_digest(model), "output_stride": int(model.output_stride),
            "num_classes": int(model.num_classes),
            "calibration": {**(calibration_info or {}), "num_images": len(images),
                            "image_sizes": sorted({tuple(x.shape[-2:]) for x in images})},
            "versions": library_versions(spec),
            "sha256": file_digests(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=list) + "\n")
        _publish(tmp, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return output


def check_quantize_output(output: Path, *, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False) -> None:
    """Refuse an ``--output`` that holds an input, is a file, or is a folder with contents;
    ``overwrite`` replaces only a folder an earlier ``atrous quantize`` wrote."""
    for source in inputs:
        if Path(source).resolve().is_relative_to(output.resolve()):
            raise OutputExistsError(f"--output {output} holds the input {source}; choose another folder")
    if output.exists() and not output.is_dir():
        raise OutputExistsError(f"--output {output} is a file; give a folder for the quantized model")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"--output {output} already exists; pass --overwrite to replace it, or choose another folder")
        if not (output / MANIFEST).is_file():
            raise OutputExistsError(f"--output {output} is not a folder atrous quantize wrote (no {MANIFEST}); "
                                    "--overwrite replaces only those: choose another folder")


def _publish(tmp: Path, output: Path) -> None:
    """Move the files of ``tmp`` into ``output``, the manifest last; the outputs of an earlier
    ``atrous quantize`` there (``--overwrite``) are moved aside first (:func:`atrous.io.move_aside`)."""
    if not output.exists():
        os.rename(tmp, output)
        return
    if (output / MANIFEST).is_file():
        move_aside([output / name for name in quantize_outputs(output)], output)
    names = sorted((p.name for p in tmp.iterdir()), key=lambda name: name == MANIFEST)
    for name in names:
        os.rename(tmp / name, output / name)


def quantize_outputs(folder: Path) -> list[str]:
    """The files ``atrous quantize`` wrote into ``folder``: its manifest, the files it records,
    the report."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    recorded = manifest.get("sha256") if isinstance(manifest, dict) else None
    listed = set(recorded) if isinstance(recorded, dict) else set()
    files = manifest.get("files") if isinstance(manifest, dict) else None
    listed |= {str(f) for f in files.values()} if isinstance(files, dict) else set()
    listed |= {Path(f).with_suffix(".bin").name for f in listed if f.endswith(".xml")}
    return sorted(listed | {MANIFEST, REPORT})


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The ``quantization.json`` of an ``atrous quantize`` folder; a clear error if it is not one."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except FileNotFoundError:
        raise InputError(f"--quantized {folder}: no {MANIFEST}; pass the folder `atrous quantize --output` wrote") from None
    except (OSError, ValueError) as err:
        raise InputError(f"--quantized {folder}/{MANIFEST} is unreadable ({err}); quantize again") from None
    missing = [f for f in manifest.get("files", {}).values() if not (folder / f).is_file()]
    if missing or "engine" not in manifest:
        raise InputError(f"--quantized {folder} is incomplete (missing {missing or ['engine']}); quantize again")
    return manifest


def load_quantized(model: nn.Module, options: EngineOptions, device: torch.device, info: dict[str, Any]) -> Engine:
    """The int8 engine of ``options.quantized``, checked against ``model`` (the fp32 model)."""
    folder = Path(options.quantized)  # type: ignore[arg-type]
    manifest = read_manifest(folder)
    if manifest["engine"] != options.engine:
        raise InputError(f"--quantized {folder} was quantized for {manifest['engine']}; pass --engine {manifest['engine']}")
    if manifest.get("output_stride") != model.output_stride:
        raise InputError(f"--quantized {folder} runs at output stride {manifest.get('output_stride')}, not {model.output_stride}; "
                         "quantize again at that stride or drop --output-stride")
    if manifest.get("model_sha256") != model_digest(model):
        raise CheckpointError(f"--quantized {folder} was quantized from another model than this checkpoint's; "
                              "quantize this checkpoint (atrous quantize --checkpoint CKPT ...)")
    recorded = manifest.get("sha256")
    if not isinstance(recorded, dict):
        raise InputError(f"--quantized {folder}/{MANIFEST} records no sha256 of its files; quantize again")
    if changed := changed_files(folder, recorded):
        raise InputError(f"--quantized {folder}: {', '.join(changed)} changed since atrous quantize wrote it "
                         "(its sha256 differs from the one recorded); quantize again")
    int8 = folder / manifest["files"]["int8"]  # the folder stays as written: nothing compiled is kept in it
    return engine_spec(options.engine).implementation().open_engine(int8, options, device, info, cache_folder=None)
