"""``atrous quantize``: int8 post-training quantization with calibration and a report.

1. Calibration: ``num_images`` images of the ``calibration`` split (a seeded random subset, the
   same every run), prepared with the evaluation transforms (the val split's ``resize`` and
   ``normalize``: what the model sees at inference, without training augmentation).
2. Quantization for OpenVINO (NNCF) or onnxruntime (static QDQ): :mod:`atrous.engines.int8`.
3. The report, ``report.json`` in the output folder: the val split's mIoU in fp32 (the same
   engine unquantized) and int8, both through ``atrous validate``'s protocol; the fraction of
   val pixels whose label int8 and fp32 agree on; the latency of both engines on a val-sized
   input, timed interleaved in this process (per-round ratios, as ``atrous benchmark``).
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import thaw
from ..data.build import build_dataset
from ..data.spec import DataSpec
from ..engines import Engine, EngineOptions, build_engine
from ..engines.int8 import REPORT, check_quantize_output, quantize_model
from ..engines.registry import QUANTIZE_ENGINES
from ..errors import ConfigError, InputError
from ..io import atomic_write, json_text
from ..models.checkpoint import ConfigSource, load_segmentor
from .benchmark import latency_stats, machine_info, paired_ratio, time_steps


def split_dataset(data: DataSpec, split: str) -> Any:
    """The ``split`` of a config's datasets, with the evaluation transforms (val's resize and
    normalisation: :meth:`~atrous.data.spec.DataSpec.evaluation_transforms`)."""
    if split not in data.splits:
        raise ConfigError(f"data.{split}: the config has no {split} split to calibrate on; choose one of {list(data.splits)}")
    split_cfg = {**thaw(data.split(split)), "transforms": data.evaluation_transforms()}
    return build_dataset(thaw(data.dataset), split_cfg, train=False)


def calibration_images(dataset: Any, num_images: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """``(1, 3, h, w)`` images of a seeded random subset of ``dataset`` (all of it if smaller)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:num_images]
    for index in order.tolist():
        yield dataset[index][0].unsqueeze(0)


def label_agreement(a: Engine, b: Engine, dataset: Any, limit: int | None = None) -> dict[str, Any]:
    """Fraction of pixels where ``a`` and ``b`` predict the same label, over ``dataset``'s images."""
    equal = total = 0
    with torch.inference_mode():
        for index in range(len(dataset) if limit is None else min(limit, len(dataset))):
            x = dataset[index][0].unsqueeze(0)
            equal += int((a(x).argmax(1) == b(x).argmax(1)).sum())
            total += x.shape[-2] * x.shape[-1]
    return {"pixels": total, "agreement": equal / max(total, 1)}


def time_engines(engines: Mapping[str, Engine], x: torch.Tensor, repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
    """Latency of each engine on ``x``, interleaved, with the per-round speed-up over the first."""
    steps = {name: (lambda e=engine: e(x)) for name, engine in engines.items()}
    times = time_steps(steps, torch.device("cpu"), repeats, warmup)
    stats = {name: latency_stats(t, x.shape[0]) for name, t in times.items()}
    first, *others = list(stats)
    return {"image_size": list(x.shape[-2:]), "latency": stats,
            "speedup": {name: paired_ratio(stats[first], stats[name]) for name in others}}  # first / other


def run_quantize(
    *,
    checkpoint: str,
    output: str,
    engine: str = "openvino",
    calibration: str = "train",
    num_images: int = 128,
    config: ConfigSource = None,
    overrides: Sequence[str] = (),
    config_file: str | None = None,
    overwrite: bool = False,
    evaluate: bool = True,
    repeats: int = 10,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """What ``atrous quantize`` does; returns the report (also written to ``output/report.json``)."""
    from ..training.runner import evaluate as evaluate_split

    if engine not in QUANTIZE_ENGINES:
        raise InputError(f"--engine {engine}: atrous quantizes for {list(QUANTIZE_ENGINES)}")
    if isinstance(config, (str, os.PathLike)):
        config_file = config_file or config
    check_quantize_output(Path(output), inputs=[checkpoint, *([config_file] if config_file else [])],
                          overwrite=overwrite)  # before anything is loaded
    model, cfg = load_segmentor(checkpoint, config, overrides)
    data = DataSpec.from_mapping(cfg.get("data"))
    dataset = split_dataset(data, calibration)
    if len(dataset) == 0:
        raise InputError(f"the {calibration} split has no images to calibrate on")
    print(f"atrous quantize: calibrating {engine} int8 on {min(num_images, len(dataset))} {calibration} images",
          file=sys.stderr)
    folder = quantize_model(
        copy.deepcopy(model), engine, calibration_images(dataset, num_images), output, num_images=num_images,
        calibration_info={"split": calibration, "seed": 0, "checkpoint": str(checkpoint)}, overwrite=overwrite,
        cache_dir=cache_dir,
    )
    fp32 = EngineOptions(engine=engine, cache_dir=cache_dir)
    int8 = EngineOptions(engine=engine, precision="int8", quantized=folder)
    report: dict[str, Any] = {"engine": engine, "checkpoint": str(checkpoint), "quantized": str(folder),
                              "calibration": {"split": calibration, "num_images": min(num_images, len(dataset))},
                              "machine": machine_info(torch.device("cpu"))}
    engines = {f"{engine} fp32": build_engine(model, fp32, "cpu"), f"{engine} int8": build_engine(model, int8, "cpu")}
    val = split_dataset(data, "val") if "val" in data.splits else None
    if evaluate and val is not None and len(val):
        train_cfg = {**(cfg.get("train") or {}), "accelerator": "cpu", "devices": 1}
        eval_cfg = {**cfg, "train": train_cfg}
        scores = {name: evaluate_split(eval_cfg, checkpoint, stage="val", engine=options)
                  for name, options in ((f"{engine} fp32", fp32), (f"{engine} int8", int8))}
        miou = {name: s["mIoU"] for name, s in scores.items()}
        a, b = miou.values()
        report["val"] = {"mIoU": miou, "mIoU_lost_points": round(100 * (a - b), 3),
                         **label_agreement(*engines.values(), val)}
        sample = val[0][0].unsqueeze(0)
    else:
        report["val"] = None
        sample = next(calibration_images(dataset, 1))
    report["timing"] = time_engines(engines, sample, repeats=repeats)
    atomic_write(folder / REPORT, lambda tmp: tmp.write_text(json_text(report)))
    return report


def format_quantize_report(report: Mapping[str, Any]) -> str:
    """The table ``atrous quantize`` prints."""
    lines = [f"int8 ({report['engine']}) calibrated on {report['calibration']['num_images']} "
             f"{report['calibration']['split']} images; {report['machine']['device_name']}"]
    val = report.get("val")
    if val:
        for name, value in val["mIoU"].items():
            lines.append(f"  val mIoU {name:<18} {100 * value:6.2f}")
        lines.append(f"  mIoU lost by int8        {val['mIoU_lost_points']:6.2f} points")
        lines.append(f"  labels equal to fp32     {100 * val['agreement']:6.2f} % of {val['pixels']:,} val pixels")
    timing = report["timing"]
    size = "x".join(map(str, timing["image_size"]))
    for name, stats in timing["latency"].items():
        lines.append(f"  latency {name:<17} {stats['median_ms']:8.1f} ms (median, {size})")
    for name, r in timing["speedup"].items():
        lines.append(f"  speed-up of {name} over fp32: {r['paired_median']:.2f}x "
                     f"(per-round p10-p90 {r['paired_p10']:.2f}-{r['paired_p90']:.2f})")
    lines.append(f"Wrote {report['quantized']}/{REPORT}")
    return "\n".join(lines)

