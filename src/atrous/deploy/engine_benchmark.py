"""``atrous benchmark --engines``: one model under several engines, side by side, in one process.

Each group times one network under every requested engine variant (:data:`VARIANTS`) and, for
``--peers``, the independently built peers of the same network, all on the same input
(``settings.image_size``, ``settings.batch``, inference only), **interleaved**: every round runs
each entry once, the order alternating between rounds, so a load change on a shared machine
hits all alike. Per entry: the median, p90 and images/s, and the speed-up over the group's
reference as the ratio of medians and as the median (p10–p90) of the per-round ratios.

Groups of ``--peers``:

* DeepLabV3-ResNet-50 (``torchvision/deeplabv3_resnet50`` without aux head): the atrous engine
  variants against torchvision's ``deeplabv3_resnet50`` eager (the reference) and
  segmentation_models_pytorch's ``DeepLabV3(encoder_name="resnet50")`` eager (the
  ``benchmark`` extra; its decoder is smp's own, with random weights: speed does not depend on
  them);
* DenseASPP-121 (``denseaspp/denseaspp121_cityscapes``): the engine variants against atrous'
  own eager NCHW run (the reference).

int8 variants quantize the randomly initialised network on ``INT8_CALIBRATION`` random
inputs: the timing is what matters here (``atrous quantize`` calibrates on real images and
reports the accuracy).
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..devices import resolve_device
from ..engines import EngineOptions, build_engine
from ..errors import InputError, require_extra
from ..hardware import cpu_features
from ..models.complexity import count_flops, count_parameters
from .benchmark import (
    BenchmarkSettings,
    latency_stats,
    machine_info,
    num_threads,
    paired_ratio,
    time_steps,
)
from .choices import BF16_CPU_DEFAULTS, DEFAULTS, VARIANTS, Variant

if TYPE_CHECKING:
    from ..training.experiment import Experiment

INT8_CALIBRATION = 8


def check_variants(names: Sequence[str], device: torch.device) -> tuple[Variant, ...]:
    """The variants of ``--engines`` (none: :data:`DEFAULTS`, with the bf16 variants on a CPU
    that computes bf16 natively; ``all``: every one this device runs), or a clear error."""
    if not names:
        names = DEFAULTS[device.type]
        if device.type == "cpu" and cpu_features().fast_bf16:
            names = (*names, *BF16_CPU_DEFAULTS)
    if list(names) == ["all"]:
        return tuple(v for v in VARIANTS.values() if device.type in v.devices)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise InputError(f"--engines: unknown {unknown}; choose from {list(VARIANTS)} or all")
    wrong = [n for n in names if device.type not in VARIANTS[n].devices]
    if wrong:
        raise InputError(f"--engines {' '.join(wrong)}: not on {device.type}; use --device {VARIANTS[wrong[0]].devices[0]}")
    return tuple(VARIANTS[n] for n in names)


def _engine(model: nn.Module, variant: Variant, device: torch.device, cache: Path, scratch: Path,
            image_size: tuple[int, int]) -> nn.Module:
    if variant.options is None:
        return copy.deepcopy(model).to(device)
    options = dict(variant.options)
    if options.get("precision") == "int8":
        from ..engines.int8 import quantize_model

        g = torch.Generator().manual_seed(0)
        calibration = (torch.randn(1, 3, *image_size, generator=g) for _ in range(INT8_CALIBRATION))
        options["quantized"] = quantize_model(copy.deepcopy(model), options["engine"], calibration,
                                              scratch / variant.name, num_images=INT8_CALIBRATION,
                                              cache_dir=cache)
    return build_engine(copy.deepcopy(model), EngineOptions(**options, cache_dir=cache), device)


def benchmark_group(
    title: str,
    model: nn.Module,
    variants: Sequence[Variant],
    peers: Mapping[str, nn.Module],
    settings: BenchmarkSettings,
    *,
    reference: str,
    cache: Path,
    model_name: str = "atrous",
) -> dict[str, Any]:
    """Time ``model`` under each variant and each peer (eager) interleaved; ratios to ``reference``."""
    device = resolve_device(settings.device)
    x = torch.randn(settings.batch, 3, *settings.image_size, generator=torch.Generator().manual_seed(0)).to(device)
    steps: dict[str, Callable[[], Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    params = count_parameters(model)[0]
    with tempfile.TemporaryDirectory(prefix="atrous-bench-") as scratch:
        for variant in variants:
            started = time.perf_counter()
            engine = _engine(model.eval(), variant, device, cache, Path(scratch), settings.image_size)
            name = f"{model_name} {variant.name}"
            steps[name] = lambda e=engine: e(x)
            rows[name] = {"name": name, "engine": variant.name, "params": params,
                          "setup_s": round(time.perf_counter() - started, 1)}
        for name, peer in peers.items():
            peer = peer.eval().to(device)
            steps[name] = lambda p=peer: p(x)
            rows[name] = {"name": name, "engine": "torch (peer)", "params": count_parameters(peer)[0], "setup_s": 0.0}
        if reference not in steps:
            raise InputError(f"the reference {reference!r} of {title!r} is not measured; add it to --engines")
        times = time_steps(steps, device, settings.repeats, settings.warmup)
    flops = count_flops(model, settings.image_size, settings.batch)  # the peers compute the same network
    for name, seconds in times.items():
        rows[name]["latency"] = latency_stats(seconds, settings.batch)
        rows[name]["gflops_per_s"] = round(flops / (rows[name]["latency"]["median_ms"] / 1e3) / 1e9, 1)
        rows[name]["precision"] = _precision(variants, rows[name]["engine"])
    ratios = {name: paired_ratio(rows[reference]["latency"], rows[name]["latency"]) for name in rows}
    return {"title": title, "reference": reference, "rows": list(rows.values()), "speedup": ratios}


def _precision(variants: Sequence[Variant], engine: str) -> str:
    """The precision a row computes in (eager and the peers: fp32)."""
    variant = next((v for v in variants if v.name == engine), None)
    return (variant.options or {}).get("precision", "fp32") if variant is not None else "fp32"


def fractions_of_peak(report: dict[str, Any], peak: Mapping[str, Any]) -> None:
    """Give every row of ``report`` its achieved GFLOP/s as a fraction of the peak probe's 3×3
    convolution (256 → 256, rate 1) in the row's precision, measured in the same run (int8: no
    probe, no fraction)."""
    conv = {r["precision"]: r["tflops_per_s"] * 1000 for r in peak["rows"]
            if r["op"] == "conv3x3" and r["dilation"] == 1 and r["out_channels"] == r["shape"][1]}
    report["peak"] = peak
    for group in report["groups"]:
        for row in group["rows"]:
            ceiling = conv.get(row["precision"])
            row["fraction_of_peak"] = round(row["gflops_per_s"] / ceiling, 3) if ceiling else None


def smp_deeplabv3_resnet50(num_classes: int = 21) -> nn.Module:
    """segmentation_models_pytorch's DeepLabV3-ResNet-50 (output stride 8, random weights)."""
    smp = require_extra("segmentation_models_pytorch", "benchmark", "the smp peer")
    return smp.DeepLabV3(encoder_name="resnet50", encoder_weights=None, classes=num_classes)


def benchmark_engines(
    settings: BenchmarkSettings,
    variants: Sequence[str],
    *,
    experiment: Experiment | None = None,
    peers: bool = False,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """The engine table: the model of ``experiment`` (``--config``, overrides applied) under
    ``variants``, or the ``--peers`` groups."""
    from ..config import load_config
    from ..models import build_model
    from .peers import (
        DENSEASPP121_CONFIG,
        TORCHVISION_CONFIG,
        TORCHVISION_OVERRIDES,
        atrous_to_torchvision_keys,
        torchvision_deeplabv3_resnet50,
    )

    device = resolve_device(settings.device)
    chosen = check_variants(variants, device)
    names = [v.name for v in chosen]
    reference = f"atrous {'eager' if 'eager' in names else names[0]}"  # atrous' own groups
    if cache_dir is None:
        from ..engines.cache import default_cache_dir

        cache_dir = default_cache_dir()

    def model_of(config: Any) -> nn.Module:  # a config mapping or a ModelSpec; seeded weights
        torch.manual_seed(0)
        return build_model(config, pretrained_backbone=False)

    groups = []
    with num_threads(settings.threads):
        if peers:
            deeplab = model_of(load_config(TORCHVISION_CONFIG, TORCHVISION_OVERRIDES))
            torchvision = torchvision_deeplabv3_resnet50(deeplab.num_classes)
            # atrous' weights, as --peers does: the same numbers, so denormals cannot favour either
            torchvision.load_state_dict(atrous_to_torchvision_keys(deeplab.state_dict()))
            peer_models = {"torchvision deeplabv3_resnet50": torchvision,
                           "smp DeepLabV3 resnet50": smp_deeplabv3_resnet50(deeplab.num_classes)}
            groups.append(benchmark_group("DeepLabV3-ResNet-50", deeplab, chosen, peer_models, settings,
                                          reference="torchvision deeplabv3_resnet50", cache=cache_dir))
            dense = model_of(load_config(DENSEASPP121_CONFIG))
            groups.append(benchmark_group("DenseASPP-121", dense, chosen, {}, settings,
                                          reference=reference, cache=cache_dir))
        else:
            if experiment is None:
                raise InputError("give --config CONFIG or --peers")
            groups.append(benchmark_group(experiment.name, model_of(experiment.model), chosen, {}, settings,
                                          reference=reference, cache=cache_dir))
    machine = machine_info(device)
    machine["cpu_threads"] = settings.threads or machine["cpu_threads"]
    return {"machine": machine, "image_size": list(settings.image_size), "batch": settings.batch,
            "repeats": settings.repeats, "groups": groups}


def format_engine_report(report: Mapping[str, Any]) -> str:
    """One table per group: median, p90, img/s, and the speed-up over the group's reference."""
    machine = report["machine"]
    size = "x".join(map(str, report["image_size"]))
    lines = [f"{machine['device_name']} ({machine['device']}, {machine['cpu_threads']} threads), torch {machine['torch']}; "
             f"batch {report['batch']}, {size}, inference, {report['repeats']} interleaved rounds"]
    for group in report["groups"]:
        width = max(len(r["name"]) for r in group["rows"]) + 2
        lines += ["", f"{group['title']} (speed-up over {group['reference']}; per-round median and p10-p90)"]
        lines.append(f"{'':<{width}}{'median ms':>11}{'p90 ms':>10}{'img/s':>8}{'speed-up':>10}{'per round':>11}{'p10-p90':>13}"
                     f"{'GFLOP/s':>9}{'of peak':>9}")
        for row in group["rows"]:
            lat, r = row["latency"], group["speedup"][row["name"]]
            fraction = row.get("fraction_of_peak")
            lines.append(f"{row['name']:<{width}}{lat['median_ms']:>11.1f}{lat['p90_ms']:>10.1f}{lat['images_per_s']:>8.2f}"
                         f"{r['of_medians']:>9.2f}x{r['paired_median']:>10.2f}x{r['paired_p10']:>7.2f}-{r['paired_p90']:.2f}"
                         f"{row.get('gflops_per_s', 0):>9.0f}{'' if fraction is None else f'{fraction:.0%}':>9}")
    if "peak" in report:
        lines.append("\nof peak: GFLOP/s over the peak probe's 3x3 convolution in the row's precision, same run (--peak)")
    lines.append("\nint8 rows: quantized on random inputs for timing only (atrous quantize reports accuracy)")
    return "\n".join(lines)

