"""Theoretical and effective receptive fields (report §4.1; Luo et al., NIPS 2016 for the ERF).

*Theoretical.* Per atrous layer the report's ``R = (d − 1)(K − 1) + K``; along a stack the fields
add minus one (:mod:`atrous.models.receptive_field`). DenseASPP(3, 6, 12, 18, 24) reaches
``R_max = 127`` feature-map pixels, and because every layer sees every lower layer, each of the
``2^L − 1`` subsets of layers is a path: the head samples many scales, not ``L``
(:func:`~atrous.models.receptive_field.dense_path_fields`; every head describes its paths,
:meth:`~atrous.models.heads.Head.path_fields`). For a whole model the field in *input* pixels
is the backbone's (every convolution and pooling on its main path, each growing the field by
``(R − 1)`` times the stride of its input) plus the head's ``(R_max − 1)`` feature pixels times
the head's input stride, plus one output-stride step for the bilinear upsampling of the logits.

*Effective.* The gradient of one output logit w.r.t. the input image shows which pixels the
decision actually uses. We take the centre output pixel's logit of the class predicted there,
sum ``|∂logit/∂x|`` over RGB and average over images; the map is zero outside the theoretical
field (tested) and in trained networks concentrates in a much smaller, roughly Gaussian core.
It is summarised by the side of the smallest centred square holding 50% and 90% of its mass.

The theoretical field's *size* is exact (tested), its position is not centred on the output
pixel: a strided convolution centres feature ``j`` on input pixel ``s·j`` while the bilinear
upsampling of the logits places it at ``s·j + (s − 1)/2``, so the field sits about
``(output stride − 1)/2`` pixels up and left of the pixel it explains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.colors import PowerNorm
from matplotlib.patches import Rectangle
from torch import nn

from ..models.heads import Head
from ..models.receptive_field import (
    dense_path_fields,  # noqa: F401  (part of this module's API)
    layer_receptive_field,
    stacked_receptive_field,
)
from ..models.segmentor import Segmentor
from . import ERF_TARGETS
from .common import model_device, plt, save_figure

POOLS = (nn.MaxPool2d, nn.AvgPool2d)
GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


# -- theoretical ---------------------------------------------------------------------------
def head_receptive_fields(head: Head) -> dict[str, Any]:
    """Per-layer and stacked receptive fields (feature-map pixels) of a head's atrous layers.

    ``layers``: one entry per convolution of the head's longest path (``conv_path()``) with
    its ``rate``, ``kernel``, ``layer_rf`` (report: ``(d − 1)(K − 1) + K``) and ``stacked_rf`` (the
    field after it); ``max_rf`` is ``R_max``; ``scales`` maps each field the head samples to its
    number of paths (:meth:`~atrous.models.heads.Head.path_fields`): every path for DenseASPP,
    every parallel branch for ASPP (1: the 1×1 branch); ``parallel_scales``: the fields of the
    same rates side by side (ASPP-style).
    """
    path = head.conv_path()
    layers = [
        {"rate": spec.dilation, "kernel": spec.kernel, "stride": spec.stride,
         "layer_rf": layer_receptive_field(spec.kernel, spec.dilation),
         "stacked_rf": stacked_receptive_field(path[: i + 1])}
        for i, spec in enumerate(path)
    ]
    paths = head.path_fields()
    return {"head": type(head).__name__, "layers": layers, "max_rf": stacked_receptive_field(path),
            "scales": paths.fields, "parallel_scales": list(paths.parallel),
            "global_context": bool(head.global_context)}


def _conv_specs(module: nn.Module, image_size: tuple[int, int]) -> tuple[list[tuple[int, int, float]], bool]:
    """(kernel, dilation, input stride) of every convolution and pooling that runs in
    ``module`` on a ``(1, 3, H, W)`` input, and whether any global pooling runs."""
    specs: list[tuple[int, int, float]] = []
    global_pool = False

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        nonlocal global_pool
        if isinstance(m, GLOBAL_POOLS):
            global_pool = True
            return
        kernel = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        dilation = getattr(m, "dilation", 1)
        dilation = dilation if isinstance(dilation, int) else dilation[0]
        specs.append((kernel, dilation, image_size[0] / inputs[0].shape[-2]))

    handles = [m.register_forward_pre_hook(hook) for m in module.modules()
               if isinstance(m, (nn.Conv2d, *POOLS, *GLOBAL_POOLS))]
    try:
        with torch.no_grad():
            module(torch.zeros(1, 3, *image_size, device=model_device(module)))
    finally:
        for h in handles:
            h.remove()
    return specs, global_pool


def theoretical_receptive_field(model: nn.Module, image_size: tuple[int, int] = (256, 256)) -> dict[str, Any]:
    """Theoretical receptive field of a model in input pixels (see the module docstring).

    A :class:`Segmentor` is measured as backbone + head path + upsampling; any other module is
    treated as a chain (every convolution and pooling that runs lies on one path). ``image_size``
    should be a multiple of the output stride so that input strides are exact.
    Returns ``{"input_pixels", "backbone", "head", "head_stride", "global_context"}``.
    """
    model = model.eval()
    if isinstance(model, Segmentor):
        specs, global_pool = _conv_specs(model.backbone, image_size)
        backbone = 1 + sum((layer_receptive_field(k, d) - 1) * jump for k, d, jump in specs)
        head_stride = model.backbone.output_stride // model.feature_upsample
        head = stacked_receptive_field(model.head.conv_path())
        total = backbone + (head - 1) * head_stride + model.output_stride  # + bilinear upsampling
        global_context = global_pool or bool(model.head.global_context)
    else:
        specs, global_context = _conv_specs(model, image_size)
        total = backbone = 1 + sum((layer_receptive_field(k, d) - 1) * jump for k, d, jump in specs)
        head, head_stride = 1, 1
    return {"input_pixels": int(round(total)), "backbone": int(round(backbone)), "head": head,
            "head_stride": head_stride, "global_context": global_context}


# -- effective -----------------------------------------------------------------------------
def effective_receptive_field(model: nn.Module, images: torch.Tensor, *, target: str = "predicted") -> torch.Tensor:
    """Mean over images of ``Σ_rgb |∂ logit / ∂ x|`` for the centre output pixel, ``(H, W)``.

    Args:
        model: ``(N, 3, H, W)`` → logits ``(N, K, h, w)``; run in eval mode.
        images: ``(N, 3, H, W)`` normalised inputs.
        target: ``"predicted"`` — the logit of the class predicted at the centre of each image;
            ``"sum"`` — the sum of all ``K`` logits there.
    """
    if target not in ERF_TARGETS:
        raise ValueError(f"target must be one of {ERF_TARGETS}, got {target!r}")
    model.eval()
    x = images.detach().to(model_device(model)).requires_grad_(True)
    logits = model(x)
    h, w = logits.shape[-2:]
    centre = logits[:, :, h // 2, w // 2]  # (N, K)
    if target == "predicted":
        centre = centre.gather(1, centre.argmax(1, keepdim=True))
    (grad,) = torch.autograd.grad(centre.sum(), x)
    return grad.abs().sum(1).mean(0).detach().cpu()


def centre_of(erf: torch.Tensor) -> tuple[int, int]:
    """The input pixel of the centre output pixel (``H // 2, W // 2`` at equal sizes)."""
    return erf.shape[0] // 2, erf.shape[1] // 2


def square_mass(erf: torch.Tensor, centre: tuple[int, int] | None = None) -> np.ndarray:
    """Fraction of the map's mass within the centred square of half-width ``r``, for
    ``r = 0 … max distance to an edge`` (side ``2r + 1``, clipped by the image), ``(R + 1,)``."""
    cy, cx = centre or centre_of(erf)
    h, w = erf.shape
    rows = torch.arange(h).sub(cy).abs()[:, None]
    cols = torch.arange(w).sub(cx).abs()[None, :]
    distance = torch.maximum(rows, cols)  # Chebyshev distance to the centre
    total = float(erf.sum())
    if total <= 0:
        raise ValueError("the gradient is zero everywhere: the model output does not depend on its input")
    mass = torch.zeros(int(distance.max()) + 1, dtype=torch.float64)
    mass.index_add_(0, distance.flatten(), erf.flatten().double())
    return (mass.cumsum(0) / total).numpy()


def mass_square_side(mass: np.ndarray, fraction: float) -> int:
    """Side ``2r + 1`` of the smallest centred square holding ``fraction`` of the mass."""
    return 2 * int(np.searchsorted(mass, fraction - 1e-12)) + 1


def summarize_erf(erf: torch.Tensor, theoretical: int | None = None) -> dict[str, Any]:
    """Square sides holding 50% and 90% of the gradient mass, and the mass inside the
    theoretical field (``theoretical``: its side in input pixels)."""
    mass = square_mass(erf)
    out: dict[str, Any] = {
        "image_size": list(erf.shape),
        "centre": list(centre_of(erf)),
        "side_50": mass_square_side(mass, 0.5),
        "side_90": mass_square_side(mass, 0.9),
        "mass_by_half_width": [round(float(m), 6) for m in mass],
    }
    if theoretical is not None:
        half = theoretical // 2
        out["mass_inside_theoretical"] = float(mass[min(half, len(mass) - 1)])
    return out


# -- figure --------------------------------------------------------------------------------
def plot_receptive_field(
    result: dict[str, Any], erf: torch.Tensor | None, output: Path, title: str = "", *, dense: bool = False
) -> Path:
    """Head layers' per-layer and stacked fields, the scales the head samples (``dense``: next
    to the same rates in parallel, :attr:`~atrous.models.receptive_field.PathFields.dense`), and
    the ERF heat map with its 50% / 90% squares and the theoretical field."""
    head = result["head"]
    os_ = result.get("output_stride")
    ncols = 3 if erf is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.4), gridspec_kw={"width_ratios": [1, 1, 1.5][:ncols]})
    ax = axes[0]
    layers = head["layers"]
    if layers:
        idx = np.arange(len(layers))
        ax.bar(idx, [lay["layer_rf"] for lay in layers], color="tab:blue", alpha=0.7, label="layer: (d−1)(K−1)+K")
        ax.plot(idx, [lay["stacked_rf"] for lay in layers], "o-", color="tab:red", label="stacked (path so far)")
        ax.set_xticks(idx, [f"d={lay['rate']}" for lay in layers], rotation=45 if len(layers) > 8 else 0)
        ax.annotate(f"R_max = {head['max_rf']}", (idx[-1], layers[-1]["stacked_rf"]), textcoords="offset points",
                    xytext=(-8, -4), ha="right", va="top", color="tab:red")
    ax.set(xlabel="atrous layer (rate)", ylabel="receptive field (feature-map pixels)",
           title=f"{head['head']}: per-layer and stacked fields")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")

    ax = axes[1]
    scales = head["scales"]
    ax.bar(list(scales), list(scales.values()), width=max(1.5, head["max_rf"] / 80), color="tab:purple",
           label=f"{head['head']}: {sum(scales.values())} paths, {len(scales)} fields")
    if dense:
        parallel = head["parallel_scales"]
        ax.plot(parallel, [-0.25] * len(parallel), "v", color="tab:gray", ms=7,
                label=f"same rates in parallel: {len(parallel)} fields")
    ax.set(xlabel="receptive field (feature-map pixels)", ylabel="number of paths",
           title="Scales the head samples")
    if os_:
        ax.set_xlabel(f"receptive field (feature-map pixels; × {os_} = input pixels)")
    ax.set_ylim(-0.6, max(scales.values()) + 1)
    ax.yaxis.get_major_locator().set_params(integer=True)
    if head["global_context"]:
        ax.text(0.98, 0.97, "+ image-level pooling (global)", transform=ax.transAxes, ha="right", va="top", fontsize=8)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3, axis="y")

    if erf is not None:
        ax = axes[2]
        e = result["erf"]
        shown = (erf / erf.max()).numpy()
        im = ax.imshow(shown, cmap="inferno", interpolation="nearest", norm=PowerNorm(0.5, vmin=0, vmax=1))
        fig.colorbar(im, ax=ax, fraction=0.03, pad=0.02, label="|∂ logit / ∂ input| (normalised, sqrt scale)")
        cy, cx = e["centre"]
        for side, colour, name in ((e["side_50"], "cyan", "50%"), (e["side_90"], "lime", "90%")):
            ax.add_patch(Rectangle((cx - side / 2, cy - side / 2), side, side, fill=False, ec=colour, lw=1.3,
                                   label=f"{name} of gradient mass: {side}×{side}"))
        theory = result["theoretical"]["input_pixels"]
        h, w = shown.shape
        if theory <= 2 * max(h, w):
            ax.add_patch(Rectangle((cx - theory / 2, cy - theory / 2), theory, theory, fill=False, ec="white",
                                   ls="--", lw=1.0, label=f"theoretical field: {theory}×{theory}"))
        else:
            ax.plot([], [], " ", label=f"theoretical field: {theory}×{theory} (beyond the image)")
        ax.plot(cx, cy, "+", color="white", ms=8)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set(xlabel="x (input pixels)", ylabel="y (input pixels)",
               title=f"Effective receptive field ({e['num_images']} images)")
        ax.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0.0, -0.45), frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, output)


def receptive_field_report(
    model: Segmentor, images: torch.Tensor | None, output: Path, *, target: str = "predicted", title: str = ""
) -> dict[str, Any]:
    """The head's fields and, with ``images`` ``(N, 3, H, W)``, the model's effective receptive
    field on them; the figure is written to ``output`` (PNG), the numbers returned."""
    size = images.shape[-2:] if images is not None else (256, 256)
    probe = tuple(max(s, 1) // model.output_stride * model.output_stride or model.output_stride for s in size)
    result: dict[str, Any] = {
        "head": head_receptive_fields(model.head),
        "output_stride": model.output_stride,
        "theoretical": theoretical_receptive_field(model, probe),
        "definitions": {
            "layer_rf": "report §4.1: (d - 1)(K - 1) + K, feature-map pixels",
            "stacked_rf": "fields along the path add minus one (report §4.1), feature-map pixels",
            "scales": "distinct fields of all paths through the head (DenseASPP: every subset of layers)",
            "theoretical.input_pixels": "backbone field + (R_max - 1) x head input stride + one output-stride "
                                        "step for the bilinear upsampling of the logits",
            "erf": f"mean over images of sum_rgb |d logit / d input| for the centre output pixel "
                   f"({'logit of the predicted class' if target == 'predicted' else 'sum of all logits'}); "
                   "side_50/side_90: smallest centred square holding 50%/90% of it, input pixels",
        },
    }
    erf = None
    if images is not None:
        erf = effective_receptive_field(model, images, target=target)
        result["erf"] = {"num_images": len(images), "target": target,
                         **summarize_erf(erf, result["theoretical"]["input_pixels"])}
    plot_receptive_field(result, erf, output, title=title, dense=model.head.path_fields().dense)
    return result
