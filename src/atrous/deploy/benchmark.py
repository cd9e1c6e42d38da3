"""Latency, throughput, memory and FLOP/s of segmentors: inference and one training step.

Each model is measured in two phases:

* **inference**: the torch engine that ``build_engine`` makes of the model (its precision,
  memory layout and ``torch.compile`` as the settings ask; :mod:`atrous.engines.torch_engine`),
  called under ``torch.no_grad()``;
* **train**: one SGD step (momentum 0.9): forward, cross-entropy against random labels,
  backward, ``optimizer.step()``; BatchNorm in training mode, so the batch is at least 2; the
  torch engine's autocast and memory layout.

After ``warmup`` runs, ``repeats`` runs are timed one by one (``torch.cuda.synchronize()``
before and after each on GPU); the median and 90th percentile are reported, throughput is
``batch / median``. Several models given together are timed **interleaved** (A, B, B, A, …), so
a machine shared with other jobs slows them alike and their ratio stays meaningful.

Memory: one extra run per phase after warm-up, :func:`atrous.deploy.memory.peak_memory`: the
most tensor memory a step holds beyond what existed before it (CUDA: ``max_memory_allocated``;
CPU: a dispatch-mode count of live tensors), plus the resident-set increase on CPU.

FLOPs come from ``torch.utils.flop_counter`` on a meta-device copy (inference as in
:func:`atrous.models.complexity.count_flops`; training counts forward and backward);
achieved TFLOP/s = FLOPs / median latency.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import math
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..devices import resolve_device
from ..engines import EngineOptions, build_engine
from ..engines.registry import engine_spec
from ..engines.torch_engine import autocast, memory_format
from ..errors import ConfigError, InputError
from ..models.complexity import count_flops, count_parameters
from .choices import PHASES
from .memory import peak_memory

if TYPE_CHECKING:
    from ..training.experiment import Experiment

PRECISIONS = engine_spec("torch").precisions


@dataclass
class BenchmarkSettings:
    """How to measure; every field is a command-line option of ``atrous benchmark``."""

    device: str = "cpu"
    image_size: tuple[int, int] = (512, 1024)  # (H, W) of the inference input
    batch: int = 1  # inference batch
    train_image_size: tuple[int, int] | None = None  # (H, W) of the training step; None: image_size
    train_batch: int | None = None  # None: max(2, batch) (BatchNorm needs 2 in training)
    precision: str = "fp32"  # the torch engine's precision: fp32, bf16, fp16 (autocast)
    channels_last: bool = False  # the torch engine's memory format: channels_last, else contiguous
    compile: bool = False  # torch.compile (warm-up runs absorb the compilation)
    compile_backend: str = "inductor"  # torch.compile's backend ("aot_eager": traced, no code generation)
    fold_bn: bool = False  # fold BatchNorm into convolutions (inference only)
    repeats: int = 10
    warmup: int = 2
    phases: tuple[str, ...] = PHASES
    threads: int | None = None  # CPU threads (torch.set_num_threads); None: torch's default

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.repeats < 1 or self.warmup < 0 or self.batch < 1:
            raise InputError("repeats and batch must be >= 1, warmup >= 0")
        unknown = set(self.phases) - set(PHASES)
        if unknown or not self.phases:
            raise InputError(f"phases must be a non-empty subset of {PHASES}, got {self.phases}")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.train_image_size = tuple(self.train_image_size or self.image_size)  # type: ignore[assignment]
        self.train_batch = int(self.train_batch or max(2, self.batch))
        if self.threads is not None and self.threads < 1:
            raise InputError(f"threads must be >= 1, got {self.threads}")
        if self.train_batch < 2 and "train" in self.phases:
            raise InputError("the training step needs a batch of at least 2 (BatchNorm in training mode)")


def machine_info(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = _cpu_name()
    return {
        "device": str(device),
        "device_name": name,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


# -- timing and memory -----------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_once(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (device-synchronised)."""
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ``q`` quantile of sorted values by the nearest-rank method (p90 of 10 runs: the 9th)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_stats(seconds: list[float], batch: int) -> dict[str, float]:
    """Median, p90, min, mean in ms and throughput (images/s at the median)."""
    ordered = sorted(seconds)
    median = statistics.median(ordered)
    p90 = nearest_rank(ordered, 0.9)
    return {
        "median_ms": round(median * 1e3, 3),
        "p90_ms": round(p90 * 1e3, 3),
        "min_ms": round(ordered[0] * 1e3, 3),
        "mean_ms": round(statistics.fmean(ordered) * 1e3, 3),
        "images_per_s": round(batch / median, 3),
        "runs_ms": [round(t * 1e3, 3) for t in seconds],  # in the order they ran
    }


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


# -- the two phases -----------------------------------------------------------------------
def training_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Logits the training step puts a loss on: the main ones, plus auxiliary ones if any."""
    if hasattr(model, "forward_with_aux") and getattr(model, "aux_head", None) is not None:
        logits, aux = model.forward_with_aux(x)
        return [logits, aux]
    return [model(x)]


def inference_step(engine: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """``engine(x)`` without autograd."""

    def step() -> torch.Tensor:
        with torch.no_grad():
            return engine(x)

    return step


def train_step(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor, precision: str, lr: float = 1e-3
) -> Callable[[], torch.Tensor]:
    """One SGD step on ``(x, target)``; fp16 on CUDA goes through a ``GradScaler``."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ConfigError("the model has no trainable parameters: nothing to benchmark in a training step")
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9)
    scaler = torch.amp.GradScaler(x.device.type, enabled=precision == "fp16" and x.device.type == "cuda")

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast(x.device, precision):
            outputs = training_outputs(model, x)
            loss = sum(F.cross_entropy(o.float(), target, ignore_index=255) for o in outputs)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    return step


def count_train_flops(model: nn.Module, image_size: tuple[int, int], batch: int) -> int:
    """FLOPs of one training forward + backward on ``(batch, 3, H, W)`` (meta device)."""
    meta = copy.deepcopy(model).to("meta").train()
    x = torch.zeros(batch, 3, *image_size, device="meta")
    with FlopCounterMode(display=False) as counter:
        outputs = training_outputs(meta, x)
        sum(o.float().logsumexp(1).mean() for o in outputs).backward()
    return int(counter.get_total_flops())


# -- measuring several models together ----------------------------------------------------------
@dataclass
class _Runner:
    """One model in one phase: its step function, batch and FLOPs."""

    name: str
    step: Callable[[], Any]
    device: torch.device
    batch: int
    flops: int
    times: list[float] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)


def engine_options(settings: BenchmarkSettings) -> EngineOptions:
    """The torch engine the settings ask for."""
    return EngineOptions(precision=settings.precision, compile=settings.compile, compile_backend=settings.compile_backend,
                         memory_format="channels_last" if settings.channels_last else "contiguous")


def _prepare(model: nn.Module, phase: str, settings: BenchmarkSettings, device: torch.device) -> nn.Module:
    """A copy of ``model`` set up for ``phase``: the torch engine of it (BatchNorm folded if asked)
    for inference; in training mode, in the engine's memory format, compiled if asked, for training."""
    model = copy.deepcopy(model).to(device)
    options = engine_options(settings)
    if phase == "inference":
        model.eval()
        if settings.fold_bn:
            from ..engines.batchnorm import fold_batchnorm

            model = fold_batchnorm(model, inplace=True)
        return build_engine(model, options, device, log=False)
    model = model.train().to(memory_format=memory_format(options, device))
    if settings.compile:
        model = torch.compile(model, backend=settings.compile_backend)
    return model


def _inputs(phase: str, settings: BenchmarkSettings, num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    size = settings.image_size if phase == "inference" else settings.train_image_size
    batch = settings.batch if phase == "inference" else settings.train_batch
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *size, generator=g)
    target = torch.randint(0, num_classes, (batch, *size), generator=g)
    if phase == "train":  # the inference engine lays its input out itself
        x = x.to(memory_format=memory_format(engine_options(settings), device))
    return x.to(device), target.to(device)


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    return int(getattr(model, "num_classes", last.out_channels))


def benchmark_models(models: dict[str, nn.Module], settings: BenchmarkSettings) -> list[dict[str, Any]]:
    """Measure each model of ``models`` (name → model) in every phase of ``settings``.

    Returns one entry per model: ``name``, ``params``, and per phase ``image_size``, ``batch``,
    ``gflops``, ``latency`` (:func:`latency_stats`), ``tflops_per_s`` and memory (:func:`peak_memory`).
    """
    device = resolve_device(settings.device)
    with num_threads(settings.threads):
        return _benchmark_models(models, settings, device)


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _benchmark_models(models: dict[str, nn.Module], settings: BenchmarkSettings, device: torch.device) -> list[dict[str, Any]]:
    entries = {name: {"name": name, "params": count_parameters(model)[0]} for name, model in models.items()}
    for phase in settings.phases:
        runners = [_make_runner(name, model, phase, settings, device) for name, model in models.items()]
        _time_interleaved(runners, settings.repeats)
        for runner in runners:
            stats = latency_stats(runner.times, runner.batch)
            runner.result["latency"] = stats
            runner.result["tflops_per_s"] = round(runner.flops / (stats["median_ms"] / 1e3) / 1e12, 4)
            entries[runner.name][phase] = runner.result
        del runners
        gc.collect()
    return list(entries.values())


def _make_runner(name: str, model: nn.Module, phase: str, settings: BenchmarkSettings, device: torch.device) -> _Runner:
    """Set ``model`` up for ``phase``, count its FLOPs, warm it up and measure its memory."""
    if phase == "inference":
        size, batch = settings.image_size, settings.batch
        flops = count_flops(model, size, batch)
    else:
        size, batch = settings.train_image_size, settings.train_batch
        flops = count_train_flops(model, size, batch)
    prepared = _prepare(model, phase, settings, device)
    x, target = _inputs(phase, settings, _num_classes(model), device)
    if phase == "inference":
        step = inference_step(prepared, x)
    else:
        step = train_step(prepared, x, target, settings.precision)
    runner = _Runner(name, step, device, batch, flops)
    runner.result = {"image_size": list(size), "batch": batch, "gflops": round(flops / 1e9, 3)}
    for _ in range(settings.warmup):
        step()
    runner.result |= peak_memory(step, device, compiled=settings.compile)
    return runner


def time_steps(steps: dict[str, Callable[[], Any]], device: torch.device, repeats: int, warmup: int = 0) -> dict[str, list[float]]:
    """Seconds of each step, ``warmup`` untimed calls first, then ``repeats`` rounds in which every
    step runs once, the order alternating (A B, B A, …), under ``torch.inference_mode()``."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for step in steps.values():
            for _ in range(warmup):
                step()
        for r in range(repeats):
            for name in names if r % 2 == 0 else names[::-1]:
                times[name].append(time_once(steps[name], device))
    return times


def _time_interleaved(runners: list[_Runner], repeats: int) -> None:
    """Time every runner ``repeats`` times, alternating the order each round (A B, B A, …)."""
    for r in range(repeats):
        for runner in runners if r % 2 == 0 else runners[::-1]:
            runner.times.append(time_once(runner.step, runner.device))


def settings_dict(settings: BenchmarkSettings) -> dict[str, Any]:
    out = asdict(settings)
    out["image_size"], out["train_image_size"] = list(settings.image_size), list(settings.train_image_size)
    out["phases"] = list(settings.phases)
    return out


# -- reports ------------------------------------------------------------------------------------
SHARED_CPU_NOTE = (
    "CPU figures depend on what else runs on the machine; peers are timed interleaved in one "
    "process so that their ratio stays meaningful when absolute figures do not."
)


def benchmark_config(experiment: Experiment, settings: BenchmarkSettings) -> dict[str, Any]:
    """Benchmark the model of ``experiment`` (``--config``, overrides applied; random weights:
    speed does not depend on them)."""
    from ..models import build_model

    device = resolve_device(settings.device)
    torch.manual_seed(0)
    models = {f"atrous {experiment.name}": build_model(experiment.model, pretrained_backbone=False)}
    return _report(benchmark_models(models, settings), [], settings, device)


def benchmark_peers(settings: BenchmarkSettings) -> dict[str, Any]:
    """atrous against torchvision's DeepLabv3 and against a plain DenseASPP-121 (see :mod:`.peers`)."""
    from .peers import peer_pairs

    device = resolve_device(settings.device)
    entries, comparisons = [], []
    for title, models in peer_pairs():
        measured = benchmark_models(models, settings)
        entries += measured
        ours, peer = measured
        comparisons.append({
            "title": title,
            "atrous": ours["name"],
            "peer": peer["name"],
            "latency_ratio": {phase: paired_ratio(ours[phase]["latency"], peer[phase]["latency"]) for phase in settings.phases},
        })
    return _report(entries, comparisons, settings, device)


def paired_ratio(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float]:
    """Latency ratio ours / peer: of the medians, and the median, p10 and p90 of the per-round
    ratios (both models timed back to back in each round, so a load change hits both)."""
    rounds = sorted(a / b for a, b in zip(ours["runs_ms"], peer["runs_ms"], strict=True))
    return {
        "of_medians": round(ours["median_ms"] / peer["median_ms"], 3),
        "paired_median": round(statistics.median(rounds), 3),
        "paired_p10": round(nearest_rank(rounds, 0.1), 3),
        "paired_p90": round(nearest_rank(rounds, 0.9), 3),
    }


def _report(entries: list[dict], comparisons: list[dict], settings: BenchmarkSettings, device: torch.device) -> dict[str, Any]:
    machine = machine_info(device)
    machine["cpu_threads"] = settings.threads or machine["cpu_threads"]
    report = {"machine": machine, "settings": settings_dict(settings), "models": entries}
    if comparisons:
        report["comparisons"] = comparisons
    if device.type == "cpu":
        report["note"] = SHARED_CPU_NOTE
    return report


def format_report(report: dict[str, Any]) -> str:
    """The tables ``atrous benchmark`` prints: one per phase, then the peer ratios."""
    machine, settings = report["machine"], report["settings"]
    lines = [
        f"{machine['device_name']} ({machine['device']}, {machine['cpu_threads']} CPU threads), torch {machine['torch']}, "
        f"{settings['precision']}{', channels_last' if settings['channels_last'] else ''}"
        f"{', compiled' if settings['compile'] else ''}"
    ]
    width = max(len(e["name"]) for e in report["models"]) + 2
    for phase in settings["phases"]:
        first = report["models"][0][phase]
        size = "×".join(map(str, first["image_size"]))
        what = "forward, no grad" + (", BN folded" if settings["fold_bn"] else "") if phase == "inference" else "forward + backward + SGD step"
        lines += ["", f"{phase}: batch {first['batch']}, {size}, {what}; median of {settings['repeats']} runs"]
        lines.append(
            f"{'model':<{width}}{'params':>11}{'GFLOPs':>10}{'median ms':>12}{'p90 ms':>11}{'img/s':>9}{'TFLOP/s':>9}"
            f"{'peak MB':>9}{'RSS+ MB':>9}"
        )
        for entry in report["models"]:
            r = entry[phase]
            lat = r["latency"]
            lines.append(
                f"{entry['name']:<{width}}{entry['params']:>11,}{r['gflops']:>10.1f}{lat['median_ms']:>12.1f}"
                f"{lat['p90_ms']:>11.1f}{lat['images_per_s']:>9.2f}{r['tflops_per_s']:>9.3f}{r['peak_memory_mb']:>9.0f}"
                f"{r.get('peak_rss_increase_mb', float('nan')):>9.0f}"
            )
    for comparison in report.get("comparisons", []):
        lines.append(f"\nlatency {comparison['atrous']} / {comparison['peer']} (< 1: atrous faster)")
        for phase, r in comparison["latency_ratio"].items():
            lines.append(
                f"  {phase:<10} ratio of medians {r['of_medians']:.3f}; per-round ratios: median "
                f"{r['paired_median']:.3f}, p10-p90 {r['paired_p10']:.3f}-{r['paired_p90']:.3f}"
            )
    memory = report["models"][0][settings["phases"][0]]["memory_measure"]
    lines.append(f"\npeak MB: {memory}")
    if machine["device"] == "cpu":
        lines.append("RSS+ MB: resident-set high-water mark over the run's start (allocator caching can hide memory)")
    if "note" in report:
        lines.append(report["note"])
    return "\n".join(lines)
