#!/usr/bin/env python3
"""Peak memory of sliding-window prediction on large images: ``atrous predict --window`` on a
generated N×N image with the demo config's network (untrained weights: memory does not depend on
them), each size in a child process under ``/usr/bin/time -v``, its peak resident set printed.

    python scripts/bench_window_memory.py                          # 2000² and 4000²
    python scripts/bench_window_memory.py --sizes 2000 4000 8000   # the goal: 8000² under 3 GB
    PYTHONPATH=/other/checkout/src python scripts/bench_window_memory.py   # another checkout

The image is a smooth pattern (it compresses, so writing and decoding it is quick). By default
the windows are 512×1024 without overlap and the network runs re-dilated at output stride 32:
fewer FLOPs, so 8000² takes about a minute on 2 cores, while the image-sized arrays (the image,
the labels, the window accumulator) are the same; ``--overlap 0.333 --output-stride 8`` measures
predict's own defaults.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from atrous.config import load_config
from atrous.models import build_model

CONFIG = "demo/denseaspp_resnet18_small"
GOAL_GB = {8000: 3.0}  # the peak the 8000² run should stay under


def write_checkpoint(folder: Path) -> Path:
    """The demo network with random weights, in the layout ``atrous fit`` writes."""
    cfg = load_config(CONFIG)
    torch.manual_seed(0)
    model = build_model(cfg, pretrained_backbone=False).eval()
    path = folder / "demo.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"config": cfg, "class_names": None, "ignore_index": 255}}, path)
    return path


def write_image(path: Path, side: int) -> Path:
    """A ``side``×``side`` RGB PNG: gradients and stripes, written band by band."""
    y = np.arange(side, dtype=np.int64)[:, None]
    x = np.arange(side, dtype=np.int64)[None, :]
    image = np.empty((side, side, 3), np.uint8)
    image[..., 0] = (x * 255 // side).astype(np.uint8)
    image[..., 1] = (y * 255 // side).astype(np.uint8)
    image[..., 2] = (((x // 64 + y // 64) % 2) * 200).astype(np.uint8)
    Image.fromarray(image).save(path, compress_level=1)
    return path


def peak_rss(args: list[str]) -> tuple[float, float]:
    """(peak resident set in GB, wall seconds) of ``python -m atrous.cli *args`` under /usr/bin/time -v."""
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "atrous.cli", *args],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"atrous {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if found is None:
        sys.exit("/usr/bin/time -v printed no maximum resident set size")
    return int(found[1]) / 2**20, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[2000, 4000], help="image sides (N for N×N)")
    parser.add_argument("--window", nargs=2, type=int, default=[512, 1024], metavar=("H", "W"))
    parser.add_argument("--overlap", type=float, default=0.0)
    parser.add_argument("--output-stride", type=int, default=32,
                        help="run the network re-dilated at this stride (default 32: fewer FLOPs, the same image-sized "
                             "arrays; 8: as built)")
    args = parser.parse_args()
    stride = f" --output-stride {args.output_stride}" if args.output_stride else ""
    print(f"atrous predict --window {args.window[0]} {args.window[1]} --overlap {args.overlap:.3g}{stride}, {CONFIG} "
          "(random weights), CPU fp32")
    print(f"{'image':>12} {'peak RSS':>10} {'wall':>8}  goal")
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = write_checkpoint(folder)
        for side in args.sizes:
            image = write_image(folder / f"image_{side}.png", side)
            out = folder / f"out_{side}"
            gb, seconds = peak_rss(["predict", str(image), "--checkpoint", str(checkpoint), "--output", str(out),
                                    "--window", *map(str, args.window), "--overlap", str(args.overlap),
                                    "--device", "cpu", "--precision", "fp32", "--no-progress",
                                    "--max-pixels", "0",
                                    *(["--output-stride", str(args.output_stride)] if args.output_stride else [])])
            goal = GOAL_GB.get(side)
            verdict = "" if goal is None else f"< {goal:g} GB: {'yes' if gb < goal else 'NO'}"
            failed |= goal is not None and gb >= goal
            print(f"{side:>5}x{side:<6} {gb:>8.2f} GB {seconds:>7.1f}s  {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
