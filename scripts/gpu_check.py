"""The GPU check: atrous' CUDA tests, then its speed on the GPU against the GPU's own ceiling and
against torchvision, in one run that fits a short lease of the machine.

    scripts/gpu_check.sh OUT_DIR                # on a machine with a CUDA GPU
    scripts/gpu_check.sh OUT_DIR --cpu-dry-run  # the same steps on the CPU at toy sizes (a test runs it)

Steps, in order, each bounded by what is left of ``--budget-s`` (a step whose estimate does not
fit is recorded as skipped, never started):

1. ``tests``: ``pytest -m cuda tests/test_cuda.py`` (JUnit XML and the log into OUT_DIR);
2. ``peak``: bf16 / TF32 / fp32 matrix products and a bf16 3×3 convolution
   (:mod:`atrous.deploy.peak`): the ceilings MFU is measured against;
3. ``dilation``: bf16 3×3 convolutions at DeepLabv3-R101's shapes and rates (1 to 36);
   ``profile``: a bf16 training step of DeepLabV3-R101 and DenseASPP-121 under
   ``torch.profiler``: device time by kernel kind, the top kernels into ``OUT_DIR/profile.txt``;
4. ``train``: one SGD step at batch 16, 512×1024, bf16 autocast, channels_last
   (:mod:`atrous.deploy.benchmark`): torchvision's ``deeplabv3_resnet101`` and the same network
   built by atrous (``torchvision/deeplabv3_resnet101``, no aux head) interleaved; then
   DeepLabv3-R101 at OS 16 and OS 8 (the paper's, multi-grid), DeepLabV3+ where a config exists,
   DenseASPP-121 and -161 (and -161 with memory-efficient dense layers);
5. ``inference``: batch 4 at 1024×2048 in fp32 and bf16;
6. ``data``: samples/s of the Cityscapes training pipeline (random scale 0.5–2, crop 512×1024,
   flip, colour jitter) through a DataLoader with one worker per CPU core, against the fastest
   training step's appetite;
7. ``train_compiled`` / ``inference_compiled``: the same with ``torch.compile``.

Writes ``OUT_DIR/gpu_check.json`` (everything) and ``OUT_DIR/gpu_check.log`` (a summary).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from atrous.config import load_config  # noqa: E402
from atrous.deploy.benchmark import BenchmarkSettings, benchmark_models, paired_ratio  # noqa: E402
from atrous.deploy.peak import conv3x3_peak, matmul_peak  # noqa: E402
from atrous.deploy.peers import TorchvisionLogits  # noqa: E402
from atrous.models import build_model  # noqa: E402

# Sizes on the GPU and in the CPU dry run (same code paths, toy shapes).
SIZES = {
    "gpu": {"train": (512, 1024), "train_batch": 16, "infer": (1024, 2048), "infer_batch": 4, "repeats": 5,
            "warmup": 2, "matmul": 8192, "conv": (16, 256, (128, 256)), "frames": 8, "batches": 64, "backend": "inductor"},
    "dry": {"train": (64, 128), "train_batch": 2, "infer": (64, 128), "infer_batch": 1, "repeats": 1,
            "warmup": 1, "matmul": 256, "conv": (1, 32, (32, 32)), "frames": 2, "batches": 4, "backend": "eager"},
}
# (row name, packaged config, overrides); the first two are the torchvision pair.
PEER_CONFIG = ("atrous torchvision/deeplabv3_resnet101", "torchvision/deeplabv3_resnet101", ["model.aux_head=null"])
MODELS = [
    ("atrous deeplabv3/aspp_resnet101_os16", "deeplabv3/aspp_resnet101_os16", []),
    ("atrous deeplabv3/aspp_resnet101_os8", "deeplabv3/aspp_resnet101_os8", []),
    ("atrous denseaspp/denseaspp121", "denseaspp/denseaspp121_cityscapes", []),
    ("atrous denseaspp/denseaspp161", "denseaspp/denseaspp161_cityscapes", []),
    ("atrous denseaspp/denseaspp161 memory-efficient", "denseaspp/denseaspp161_cityscapes", ["model.backbone.memory_efficient=true"]),
]
# Seconds each step took on an H200 (torch 2.11), rounded up: a step is skipped when its estimate
# does not fit in what is left of the budget. Compiling one ResNet-101 training step takes ~100 s.
ESTIMATES = {"tests": 90, "peak": 10, "dilation": 15, "profile": 20, "train": 45, "inference": 20, "data": 25, "train_compiled": 220,
             "inference_compiled": 120}
COMPILE_S = 100  # a further compiled row is started only with this much left


class Budget:
    """Seconds left of the run; steps record their status, time and result or error."""

    def __init__(self, seconds: float, log: Any) -> None:
        self.end = time.monotonic() + seconds
        self.log = log
        self.steps: dict[str, dict[str, Any]] = {}

    def left(self) -> float:
        return self.end - time.monotonic()

    def run(self, name: str, estimate: float, fn: Any) -> Any:
        if self.left() < estimate:
            self.steps[name] = {"status": "skipped", "why": f"{self.left():.0f} s left of the budget, {estimate} s estimated"}
            self.log(f"[{name}] skipped: {self.steps[name]['why']}")
            return None
        self.log(f"[{name}] start ({self.left():.0f} s left)")
        start = time.monotonic()
        try:
            result = fn()
            self.steps[name] = {"status": "ok", "seconds": round(time.monotonic() - start, 1), "result": result}
        except Exception as err:  # a failed step is a finding; the run goes on to the next
            self.steps[name] = {"status": "error", "seconds": round(time.monotonic() - start, 1),
                                "error": f"{type(err).__name__}: {err}"[:2000], "traceback": traceback.format_exc()[-6000:]}
            result = None
        self.log(f"[{name}] {self.steps[name]['status']} in {self.steps[name].get('seconds', 0)} s")
        free_memory()
        return result


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def machine(device: torch.device) -> dict[str, Any]:
    import lightning
    import torchvision

    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
        "lightning": lightning.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "cpu_cores": os.cpu_count(), "device": str(device), "atrous_commit": os.environ.get("ATROUS_COMMIT", "unknown"),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info |= {"gpu": props.name, "gpu_memory_gib": round(props.total_memory / 2**30, 1),
                 "multiprocessors": props.multi_processor_count}
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,power.limit", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as err:
            info["nvidia_smi"] = f"unavailable: {err}"
    return info


# -- steps ----------------------------------------------------------------------------------------
def run_tests(out: Path, timeout: float) -> dict[str, Any]:
    xml = out / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/test_cuda.py", "-q", "-rs", "-p", "no:cacheprovider",
           "-o", "addopts=", f"--junitxml={xml}"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]))
    with open(out / "cuda_tests.log", "w") as log:
        done = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None or case.find("error") is not None]
    tail = (out / "cuda_tests.log").read_text().strip().splitlines()[-1:]
    return {"returncode": done.returncode, **counts, "failed": failed, "summary": tail[0] if tail else ""}


def run_peak(device: torch.device, sizes: dict) -> dict[str, Any]:
    n = sizes["matmul"]
    batch, channels, size = sizes["conv"]
    precisions = ["bf16", "tf32", "fp32"] if device.type == "cuda" else ["bf16", "fp32"]
    out = {f"matmul_{p}": matmul_peak(device, p, n=n) for p in precisions}
    out["conv3x3_bf16"] = conv3x3_peak(device, "bf16", channels=channels, batch=batch, size=size)
    return out


def run_dilation(device: torch.device, sizes: dict) -> list[dict[str, Any]]:
    """bf16 3×3 convolutions at the shapes of DeepLabv3-R101 at output stride 8 (batch 16,
    512×1024 → a 64×128 map): layer3's 256 channels at rates 1 and 2, layer4's 512 at 1, 2 and
    4, ASPP's 2048 → 256 at 12, 24 and 36: what dilation itself costs in cuDNN."""
    batch, scale = (sizes["train_batch"], 1) if device.type == "cuda" else (1, 8)
    size = (64 // scale, 128 // scale)
    shapes = [(256 // scale, 256 // scale, r) for r in (1, 2)] + [(512 // scale, 512 // scale, r) for r in (1, 2, 4)]
    shapes += [(2048 // scale, 256 // scale, r) for r in (1, 12, 24, 36)]
    return [conv3x3_peak(device, "bf16", channels=c, out_channels=o, dilation=r, batch=batch, size=size, repeats=5, warmup=2)
            for c, o, r in shapes]


def build(config: str, overrides: list[str]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(load_config(config, overrides), pretrained_backbone=False)


def torchvision_peer() -> torch.nn.Module:
    from torchvision.models.segmentation import deeplabv3_resnet101

    torch.manual_seed(0)
    return TorchvisionLogits(deeplabv3_resnet101(weights=None, weights_backbone=None, aux_loss=False, num_classes=21))


def deeplabv3plus_rows() -> list[tuple[str, str, list[str]]]:
    """DeepLabV3+ configs shipped with the package, if any."""
    from atrous.config import CONFIG_ROOT

    return [(f"atrous {p.parent.name}/{p.stem}", f"{p.parent.name}/{p.stem}", [])
            for p in sorted(CONFIG_ROOT.rglob("*.yaml")) if "deeplabv3plus" in p.stem and "resnet101" in p.stem][:1]


def measure(phase: str, device: torch.device, sizes: dict, precision: str, compiled: bool, rows: list, budget: Budget,
            row_seconds: float = 20) -> dict[str, Any]:
    """The torchvision pair interleaved, then each row on its own (an out-of-memory is a result)."""
    settings = BenchmarkSettings(
        device=str(device), image_size=sizes["infer"], batch=sizes["infer_batch"], train_image_size=sizes["train"],
        train_batch=sizes["train_batch"], precision=precision, channels_last=True, compile=compiled,
        compile_backend=sizes["backend"], repeats=sizes["repeats"], warmup=sizes["warmup"] + (1 if compiled else 0),
        phases=(phase,),
    )
    result: dict[str, Any] = {"settings": {"precision": precision, "channels_last": True, "compile": compiled}, "models": {}}
    name, config, overrides = PEER_CONFIG
    pair = benchmark_models({name: build(config, overrides), "torchvision deeplabv3_resnet101": torchvision_peer()}, settings)
    for entry in pair:
        result["models"][entry["name"]] = entry
    result["atrous_over_torchvision_latency"] = paired_ratio(pair[0][phase]["latency"], pair[1][phase]["latency"])
    free_memory()
    for row_name, row_config, row_overrides in rows:
        if budget.left() < row_seconds:
            result["models"][row_name] = {"status": "skipped: budget"}
            continue
        try:
            result["models"][row_name] = benchmark_models({row_name: build(row_config, row_overrides)}, settings)[0]
        except torch.cuda.OutOfMemoryError as err:
            result["models"][row_name] = {"status": "out of memory", "error": str(err).splitlines()[0]}
        free_memory()
    return result


def run_data(device: torch.device, sizes: dict) -> dict[str, Any]:
    from torch.utils.data import DataLoader, RandomSampler

    from atrous.data.cityscapes import Cityscapes
    from atrous.data.transforms import build_transforms
    from atrous.deploy.data_benchmark import PIPELINES, write_cityscapes_frames

    workers = os.cpu_count() or 1
    size = (1024, 2048) if device.type == "cuda" else (128, 256)
    crop = {} if device.type == "cuda" else {"crop_size": (64, 128)}
    with tempfile.TemporaryDirectory(prefix="atrous-gpu-data-") as tmp:
        write_cityscapes_frames(tmp, sizes["frames"], size=size)
        dataset = Cityscapes(tmp, "train", transforms=build_transforms(train=True, **(PIPELINES["augment"] | crop)))
        batches, batch = sizes["batches"], sizes["train_batch"]
        sampler = RandomSampler(dataset, replacement=True, num_samples=batches * batch, generator=torch.Generator().manual_seed(0))
        loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
                            persistent_workers=False)
        start = time.perf_counter()
        arrivals = []
        for images, _ in loader:
            images.to(device, non_blocking=True)
            arrivals.append(time.perf_counter())
    # Steady state: once every worker has delivered its first batch (start-up and the first,
    # parallel round excluded).
    first_round = min(workers, batches - 1) - 1
    steady = (batches - 1 - first_round) * batch / (arrivals[-1] - arrivals[first_round])
    return {"workers": workers, "batch": batch, "batches": batches, "frame_size": list(size),
            "pipeline": "random scale 0.5-2, crop 512x1024, flip, colour jitter 0.2, ImageNet normalisation",
            "first_batch_s": round(arrivals[0] - start, 2), "samples_per_s": round(steady, 2),
            "samples_per_s_with_start_up": round(batches * batch / (arrivals[-1] - start), 2)}


KERNEL_KINDS = (  # (kind, substrings of a kernel's name), first match wins
    ("convolution", ("conv", "cudnn", "xmma", "implicit_gemm", "wgrad", "dgrad", "fprop", "mkldnn")),
    ("matmul", ("gemm", "addmm", "mm_")),
    ("batchnorm", ("batch_norm", "bn_", "batchnorm")),
    ("concatenation", ("cat",)),
    ("layout", ("nchwtonhwc", "nhwctonchw", "transpose", "permute", "copy_")),
    ("upsampling", ("upsample", "interpolate")),
    ("elementwise", ("elementwise", "relu", "threshold", "add", "mul", "vectorized", "triton")),
)


def kernel_kind(name: str) -> str:
    lower = name.lower()
    return next((kind for kind, keys in KERNEL_KINDS if any(k in lower for k in keys)), "other")


def run_profile(device: torch.device, sizes: dict, out: Path) -> dict[str, Any]:
    """Where one bf16 channels_last training step spends its device time, by kernel kind, for
    DeepLabV3-R101 (OS 8) and DenseASPP-121; the top kernels go to ``OUT_DIR/profile.txt``."""
    from torch.profiler import ProfilerActivity, profile

    from atrous.deploy.benchmark import train_step

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    result, tables = {}, []
    for name, config, overrides in (PEER_CONFIG, MODELS[2]):
        model = build(config, overrides).to(device, memory_format=torch.channels_last).train()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(sizes["train_batch"], 3, *sizes["train"], generator=g).to(device, memory_format=torch.channels_last)
        target = torch.randint(0, model.num_classes, (sizes["train_batch"], *sizes["train"]), generator=g).to(device)
        step = train_step(model, x, target, "bf16")
        for _ in range(sizes["warmup"]):
            step()
        with profile(activities=activities) as prof:
            for _ in range(2):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
        events = [e for e in prof.key_averages() if getattr(e, key, 0) > 0 and (device.type == "cpu" or e.device_type.name == "CUDA")]
        total = sum(getattr(e, key) for e in events) or 1
        kinds: dict[str, float] = {}
        for e in events:
            kinds[kernel_kind(e.key)] = kinds.get(kernel_kind(e.key), 0) + getattr(e, key) / total
        top = sorted(events, key=lambda e: -getattr(e, key))[:15]
        result[name] = {"device_ms_per_step": round(total / 2 / 1e3, 2),
                        "share_by_kind": {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
                        "top": [{"kernel": e.key[:120], "share": round(getattr(e, key) / total, 3), "calls": e.count} for e in top]}
        tables.append(f"== {name}: {result[name]['device_ms_per_step']} ms of kernels per step\n" +
                      "\n".join(f"{t['share']:6.1%} {t['calls']:6d}  {t['kernel']}" for t in result[name]["top"]))
        del model, step
        free_memory()
    (out / "profile.txt").write_text("\n\n".join(tables) + "\n")
    return result


# -- the report -----------------------------------------------------------------------------------
def summarise(report: dict[str, Any]) -> list[str]:
    steps = report["steps"]
    lines = [f"{report['machine'].get('gpu', report['machine']['device'])}, torch {report['machine']['torch']}, "
             f"{report['machine']['date_utc']}"]
    tests = steps.get("tests", {})
    if tests.get("status") == "ok":
        r = tests["result"]
        lines.append(f"cuda tests: {r['tests']} run, {r['failures']} failed, {r['errors']} errors, {r['skipped']} skipped {r['failed']}")
    else:
        lines.append(f"cuda tests: {tests.get('status')} {tests.get('error', tests.get('why', ''))}")
    peak = (steps.get("peak") or {}).get("result") or {}
    for key, value in peak.items():
        lines.append(f"peak {key}: {value['tflops_per_s']} TFLOP/s")
    for conv in (steps.get("dilation") or {}).get("result") or []:
        lines.append(f"conv3x3 bf16 {conv['shape'][1]}->{conv['out_channels']} rate {conv['dilation']:>2}: "
                     f"{conv['tflops_per_s']} TFLOP/s")
    bf16_peak = (peak.get("matmul_bf16") or {}).get("tflops_per_s")
    for step in ("train", "train_compiled", "inference", "inference_compiled"):
        entry = steps.get(step, {})
        if not entry:
            lines.append(f"{step}: not run (--skip)")
            continue
        if entry.get("status") != "ok":
            lines.append(f"{step}: {entry.get('status')} {entry.get('error', entry.get('why', ''))}")
            continue
        for precision, measured in entry["result"].items():
            phase = "train" if step.startswith("train") else "inference"
            ratio = measured.get("atrous_over_torchvision_latency", {}).get("paired_median")
            lines.append(f"{step} {precision}: atrous/torchvision latency {ratio}")
            for name, m in measured["models"].items():
                if phase not in m:
                    lines.append(f"  {name:<52} {m.get('status')}")
                    continue
                r = m[phase]
                mfu = f"{100 * r['tflops_per_s'] / bf16_peak:5.1f}% MFU" if bf16_peak else ""
                lines.append(f"  {name:<52} {r['latency']['images_per_s']:8.2f} img/s {r['tflops_per_s']:8.1f} TFLOP/s "
                             f"{mfu} {r['peak_memory_mb']:9.0f} MB")
    for name, prof in ((steps.get("profile") or {}).get("result") or {}).items():
        shares = ", ".join(f"{k} {v:.0%}" for k, v in prof["share_by_kind"].items())
        lines.append(f"profile {name}: {prof['device_ms_per_step']} ms/step: {shares}")
    data = steps.get("data", {})
    if data.get("status") == "ok":
        lines.append(f"data: {data['result']['samples_per_s']} samples/s with {data['result']['workers']} workers")
    for name, entry in steps.items():
        if entry.get("status") == "error":
            lines.append(f"ERROR in {name}: {entry['error']}")
    return lines


def add_mfu(report: dict[str, Any]) -> None:
    """Each measured row's fraction of the bf16 (or, for fp32 rows, TF32) matrix-product peak."""
    peak = ((report["steps"].get("peak") or {}).get("result")) or {}
    for step in ("train", "train_compiled", "inference", "inference_compiled"):
        result = (report["steps"].get(step) or {}).get("result") or {}
        for precision, measured in result.items():
            ceiling = (peak.get("matmul_bf16" if precision != "fp32" else "matmul_tf32") or peak.get("matmul_fp32") or {}).get("tflops_per_s")
            for m in measured["models"].values():
                for phase in ("train", "inference"):
                    if phase in m and ceiling:
                        m[phase]["mfu"] = round(m[phase]["tflops_per_s"] / ceiling, 4)
                        m[phase]["mfu_against"] = f"matmul {'bf16' if precision != 'fp32' else 'tf32'} {ceiling} TFLOP/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder for gpu_check.json, gpu_check.log and the test outputs")
    parser.add_argument("--cpu-dry-run", action="store_true", help="toy sizes on the CPU (no GPU needed)")
    parser.add_argument("--budget-s", type=float, default=460, help="seconds for the whole run (steps that do not fit are skipped)")
    parser.add_argument("--skip", nargs="*", default=[], choices=list(ESTIMATES), help="steps to leave out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    dry = args.cpu_dry_run
    if not dry and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --cpu-dry-run to rehearse on the CPU", file=sys.stderr)
        return 2
    device = torch.device("cpu" if dry else "cuda")
    sizes = SIZES["dry" if dry else "gpu"]
    estimates = {k: (5 if dry and k != "tests" else v) for k, v in ESTIMATES.items()}
    log_file = open(args.out / "gpu_check.log", "w")

    def log(line: str) -> None:
        print(line, flush=True)
        log_file.write(line + "\n")
        log_file.flush()

    budget = Budget(args.budget_s, log)
    report: dict[str, Any] = {"machine": machine(device), "dry_run": dry, "sizes": {k: str(v) for k, v in sizes.items()},
                              "steps": budget.steps}
    # The dry run measures the torchvision pair and DenseASPP-121 only: the same code at a fraction of the time.
    rows = [MODELS[2]] if dry else MODELS[:2] + deeplabv3plus_rows() + MODELS[2:]
    compiled_rows = [MODELS[2]]  # DenseASPP-121 beside the compiled torchvision pair
    skip = set(args.skip)
    if "tests" not in skip:
        budget.run("tests", estimates["tests"], lambda: run_tests(args.out, timeout=max(60.0, budget.left())))
    if "peak" not in skip:
        budget.run("peak", estimates["peak"], lambda: run_peak(device, sizes))
    if "dilation" not in skip:
        budget.run("dilation", estimates["dilation"], lambda: run_dilation(device, sizes))
    if "profile" not in skip:
        budget.run("profile", estimates["profile"], lambda: run_profile(device, sizes, args.out))
    if "train" not in skip:
        budget.run("train", estimates["train"], lambda: {"bf16": measure("train", device, sizes, "bf16", False, rows, budget)})
    if "inference" not in skip:
        budget.run("inference", estimates["inference"], lambda: {
            p: measure("inference", device, sizes, p, False, [MODELS[2]], budget) for p in ("fp32", "bf16")})
    if "data" not in skip:
        budget.run("data", estimates["data"], lambda: run_data(device, sizes))
    if "train_compiled" not in skip:
        budget.run("train_compiled", estimates["train_compiled"],
                   lambda: {"bf16": measure("train", device, sizes, "bf16", True, compiled_rows, budget, 5 if dry else COMPILE_S)})
    if "inference_compiled" not in skip:
        budget.run("inference_compiled", estimates["inference_compiled"],
                   lambda: {"bf16": measure("inference", device, sizes, "bf16", True, [], budget)})
    add_mfu(report)
    data = (budget.steps.get("data") or {}).get("result")
    train = (budget.steps.get("train") or {}).get("result")
    if data and train:
        fastest = max(m["train"]["latency"]["images_per_s"] for m in train["bf16"]["models"].values() if "train" in m)
        data["fastest_training_images_per_s"] = fastest
        data["pipeline_over_training"] = round(data["samples_per_s"] / fastest, 2)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str))
    for line in summarise(report):
        log(line)
    log_file.close()
    failed = [n for n, s in budget.steps.items() if s["status"] == "error"]
    tests = (budget.steps.get("tests") or {}).get("result") or {}
    return 1 if failed or tests.get("failures") or tests.get("errors") else 0


if __name__ == "__main__":
    raise SystemExit(main())
