"""Export a trained segmentor to ONNX, TorchScript or a ``torch.export`` ExportedProgram.

Every format keeps the batch size, height and width dynamic: the segmentor accepts any input
at least as large as its output stride (odd sizes included; the logits are upsampled to the
input size), and the artifacts do too. The image-pooling branch of ASPP (global average pool
→ 1×1 conv → bilinear upsampling to the dynamic feature size) exports as ``ReduceMean`` /
``GlobalAveragePool`` + ``Resize`` with a size computed from the input's shape.

* ``onnx``: ``torch.onnx.export(..., dynamo=True)`` (needs ``onnxscript``), input ``image``
  ``(N, 3, H, W)`` float32, output ``logits`` ``(N, K, H, W)``. Runs in onnxruntime.
* ``torchscript``: ``torch.jit.trace`` (``torch.jit.script`` cannot compile the model). Sizes
  are traced as ``aten::size`` ops, so the trace stays shape-generic; the input check of
  :meth:`Segmentor.forward` is not part of the trace. Deprecated upstream in favour of
  ``torch.export``; load with ``torch.jit.load``.
* ``exported-program``: ``torch.export.export`` with ``torch.export.Dim`` dynamic shapes, saved
  with ``torch.export.save`` (``.pt2``); load with ``torch.export.load(f).module()``. Inputs
  smaller than the output stride are rejected by the program's shape guards.

None of the artifacts needs atrous to load or run.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError, OutputExistsError, require_extra
from ..io import atomic_save, atomic_write, check_output, same_file
from .choices import EXPORT_FORMATS

FORMATS = EXPORT_FORMATS
SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt", "exported-program": ".pt2"}
INPUT_NAME, OUTPUT_NAME = "image", "logits"
MIN_OPSET = 18  # the oldest opset torch.onnx's dynamo exporter implements


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how closely the artifact reproduces the model."""

    path: Path
    format: str
    example_shape: tuple[int, ...]
    dynamic: bool
    max_abs_diff: float | None  # artifact vs eager model on a second input; None if not checked
    opset: int | None = None


def dynamic_shapes(*, dynamic: bool = True) -> tuple[dict[int, Any], ...] | None:
    """``torch.export`` dynamic shapes for the input ``(N, 3, H, W)``.

    N ≥ 1 is declared; H and W are ``Dim.DYNAMIC``: export infers their valid range (it assumes
    dynamic sizes are never 0 or 1, so feature maps must be at least 2×2 wherever an op would
    broadcast a size-1 dimension; in practice: images larger than twice the output stride) and
    fails instead of silently fixing them to the example's size.
    """
    if not dynamic:
        return None
    return ({0: torch.export.Dim("batch", min=1), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC},)


def export_model(
    model: nn.Module,
    path: str | Path,
    format: str,
    *,
    image_size: tuple[int, int] = (512, 1024),
    batch: int = 2,
    opset: int | None = None,
    dynamic: bool = True,
    verify: bool = True,
    overwrite: bool = True,
    keep_replaced: bool = False,
) -> ExportResult:
    """Export ``model`` (put in eval mode) to ``path``, written atomically.

    Args:
        model: the segmentor, ``(N, 3, H, W)`` → ``(N, K, H, W)``.
        path: output file (suffix free; ``.onnx`` / ``.pt`` / ``.pt2`` are conventional).
        format: one of :data:`FORMATS`.
        image_size: ``(H, W)`` of the example input used for tracing.
        batch: batch size of the example input (2: a batch of 1 invites specialisation).
        opset: ONNX opset (default: the exporter's); ONNX only.
        dynamic: keep N, H, W dynamic (default), else fix them to the example's (ONNX and
            exported program; a TorchScript trace records sizes as ops and stays generic).
        verify: run the artifact on a *different* batch size and image size (when dynamic) and
            report the largest absolute difference from the eager model.
        overwrite: replace an existing ``path``; with ``False`` it raises
            :class:`~atrous.errors.OutputExistsError` instead (``atrous export`` without ``--overwrite``).
        keep_replaced: with ``overwrite``, move an existing ``path`` aside into ``replaced-<time>/``
            instead of replacing it (:func:`atrous.io.move_aside`; ``atrous export --overwrite``).
    """
    if format not in FORMATS:
        raise InputError(f"unknown export format {format!r}; choose from {list(FORMATS)}")
    if opset is not None and format != "onnx":
        raise InputError("--opset applies to the onnx format only")
    if opset is not None and opset < MIN_OPSET:
        raise InputError(f"the ONNX exporter (torch.onnx, dynamo) writes opset {MIN_OPSET} or later, got --opset {opset}")
    if opset is not None and opset > (newest := newest_onnx_opset()):
        raise InputError(f"--opset {opset}: the installed onnx package knows opsets up to {newest}; choose {MIN_OPSET} to {newest}")
    path = Path(path)
    if format == "exported-program" and path.suffix != ".pt2":
        raise InputError(f"an exported program is a .pt2 archive (torch.export.save/load need the suffix), got {path}")
    model = model.eval()
    example = torch.randn(batch, getattr(model, "in_channels", 3), *image_size, generator=torch.Generator().manual_seed(0))
    writers = {"onnx": _write_onnx, "torchscript": _write_torchscript, "exported-program": _write_program}
    with torch.no_grad():
        opset_used = writers[format](model, example, path, dynamic=dynamic, opset=opset, overwrite=overwrite,
                                         keep_replaced=keep_replaced)
    diff = None
    if verify:
        check = verification_input(model, example, dynamic)
        with torch.no_grad():
            expected = model(check)
        actual = run_artifact(path, format, check)
        diff = float((actual - expected).abs().max()) if actual is not None else None
        if not bool(torch.isfinite(expected).all()):
            path.unlink(missing_ok=True)
            raise InputError(f"the model's own output is not finite (NaN or infinity) on a random input: its weights "
                             f"are broken, so {path} was not kept; export a checkpoint of a run that did not diverge")
        if diff is not None and not math.isfinite(diff):
            path.unlink(missing_ok=True)
            raise RuntimeError(f"the exported {format} model's output is not finite where PyTorch's is; {path} was not kept")
    return ExportResult(path, format, tuple(example.shape), dynamic, diff, opset_used)


def newest_onnx_opset() -> int:
    """The newest ONNX opset the installed ``onnx`` package defines (a large number without it:
    the exporter then says what it needs)."""
    try:
        import onnx.defs
    except ImportError:
        return 10**6
    return int(onnx.defs.onnx_opset_version())


def verification_input(model: nn.Module, example: torch.Tensor, dynamic: bool) -> torch.Tensor:
    """An input of another batch size and odd image size than ``example`` (if shapes are dynamic)."""
    if not dynamic:
        return torch.randn(example.shape, generator=torch.Generator().manual_seed(1))
    stride = int(getattr(model, "output_stride", 1))
    h, w = example.shape[-2:]
    size = (max(2 * stride + 1, h // 2 + 1), max(2 * stride + 3, w // 2 - 3))
    return torch.randn(example.shape[0] + 1, example.shape[1], *size, generator=torch.Generator().manual_seed(1))


def run_artifact(path: str | Path, format: str, x: torch.Tensor) -> torch.Tensor | None:
    """Run an exported file on ``x`` (CPU). ONNX needs onnxruntime; ``None`` if it is missing."""
    path = Path(path)
    if format == "onnx":
        try:
            import onnxruntime
        except ImportError:
            return None
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])
    with torch.no_grad():
        if format == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream
                return torch.jit.load(str(path), map_location="cpu")(x)
        return torch.export.load(str(path)).module()(x)


# -- writers ------------------------------------------------------------------------------
def _write_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, *, dynamic: bool, opset: int | None, overwrite: bool,
    keep_replaced: bool = False,
) -> int:
    require_extra("onnxscript", "export", "ONNX export")  # the dynamo exporter needs it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=dynamic_shapes(dynamic=dynamic),
            opset_version=opset,
            verbose=False,
        )
    written = int(program.model.opset_imports[""])
    if opset is not None and written != opset:
        raise RuntimeError(f"the ONNX exporter could not write opset {opset} (it produced {written}); use --opset {written}")
    atomic_write(path, lambda tmp: program.save(tmp, external_data=False), overwrite=overwrite,
                 keep_replaced=keep_replaced)
    return written


def _write_torchscript(
    model: nn.Module, example: torch.Tensor, path: Path, *, dynamic: bool, opset: int | None, overwrite: bool,
    keep_replaced: bool = False,
) -> None:
    with warnings.catch_warnings():
        # Deprecation of torch.jit, and TracerWarnings from the Python-side input check of
        # Segmentor.forward (a check, not a computation: leaving it out of the trace is intended).
        warnings.simplefilter("ignore", (FutureWarning, torch.jit.TracerWarning))
        traced = torch.jit.trace(model, example, check_trace=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        atomic_save(path, lambda buffer: torch.jit.save(traced, buffer), overwrite=overwrite,
                    keep_replaced=keep_replaced)
    return None


def _write_program(
    model: nn.Module, example: torch.Tensor, path: Path, *, dynamic: bool, opset: int | None, overwrite: bool,
    keep_replaced: bool = False,
) -> None:
    program = torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes(dynamic=dynamic))
    if dynamic:
        check_dynamic_program(program, verification_input(model, example, dynamic=True))
    atomic_save(path, lambda buffer: torch.export.save(program, buffer), overwrite=overwrite,
                keep_replaced=keep_replaced)
    return None


def check_dynamic_program(program: torch.export.ExportedProgram, other: torch.Tensor) -> None:
    """Refuse, before anything is written, a program that ``torch.export`` specialised to the
    example's shapes although they were declared dynamic: it would stop at a shape guard on
    another image size. PyTorch 2.11 does this for atrous' segmentors (a guard on the parity of
    the half-resolution map); the tested 2.14 keeps them fully dynamic."""
    try:
        with torch.no_grad():
            program.module()(other)
    except AssertionError as err:
        if not str(err).startswith("Guard failed"):
            raise
        raise InputError(
            f"torch {torch.__version__} exported a program that only accepts images shaped like the example "
            f"({str(err).strip()}); export with --static, use --format onnx, or use torch >= 2.14"
        ) from err


def export_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    format: str,
    *,
    config: dict[str, Any] | None = None,
    fold_bn: bool = False,
    overwrite: bool = False,
    inputs: Sequence[str | Path | None] = (),
    **options: Any,
) -> tuple[ExportResult, str | None]:
    """Load a checkpoint (with ``config`` overriding the stored one), optionally fold its
    BatchNorms (:func:`atrous.engines.batchnorm.fold_batchnorm`) and export it.

    Returns the :class:`ExportResult` and the folding summary (``None`` without ``fold_bn``).
    Refuses (:class:`~atrous.errors.OutputExistsError`, before loading anything) to write over
    the checkpoint or another of ``inputs`` (e.g. the config file), and over an existing file
    unless ``overwrite``, which moves it aside into ``replaced-<time>/`` once the export is written.
    """
    from ..models.checkpoint import load_segmentor
    from .batchnorm import fold_batchnorm, plan_batchnorm_folding

    checkpoint, output = Path(checkpoint), Path(output)
    example = f"model{SUFFIXES.get(format, '')}"
    if same_file(output, checkpoint):
        raise OutputExistsError(f"--output {output} is the checkpoint itself; choose another file (e.g. {example})")
    if output.is_dir():
        raise OutputExistsError(f"--output {output} is a folder; give a file name (e.g. {output}/{example})")
    check_output(output, inputs=inputs, overwrite=overwrite)
    model, _ = load_segmentor(checkpoint, config)
    summary = None
    if fold_bn:
        plan = plan_batchnorm_folding(model)
        model = fold_batchnorm(model, plan=plan, inplace=True)
        summary = plan.summary()
    return export_model(model, output, format, overwrite=overwrite, keep_replaced=True, **options), summary
