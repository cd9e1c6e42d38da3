"""``atrous check-data``: read a whole split as training reads it."""

from __future__ import annotations

import argparse

from ..config import load_config
from ..data.build import SPLIT_SECTIONS
from ..errors import InputError
from .options import overrides, with_config


def add_check_data(sub: argparse._SubParsersAction) -> None:
    chk = with_config(sub.add_parser("check-data", help="read every image and label map of a split and list every problem"))
    chk.add_argument("--split", default="train", choices=list(SPLIT_SECTIONS), help="which data.<split> to scan")
    chk.add_argument("--num-workers", type=int, help="processes reading files (default: data.num_workers, else 0)")
    chk.add_argument("--no-progress", action="store_true", help="no progress bar")
    chk.set_defaults(func=check_data_command)


def check_data_command(args: argparse.Namespace) -> int:
    from ..data.base import DatasetError
    from ..data.build import build_dataset
    from ..data.check import check_dataset, format_problems

    cfg = load_config(args.config, overrides(args))
    data_cfg = cfg.get("data") or {}
    split_cfg = data_cfg.get(args.split, {"split": args.split})  # as SegmentationDataModule reads it
    dataset = build_dataset(data_cfg.get("dataset") or {"name": "synthetic"}, split_cfg, train=False)
    workers = args.num_workers if args.num_workers is not None else int(data_cfg.get("num_workers", 0))
    if workers < 0:
        raise InputError(f"--num-workers {workers}: give 0 (read in this process) or more worker processes")
    problems = check_dataset(dataset, num_workers=workers, progress=not args.no_progress, description=f"data.{args.split}")
    where = f"data.{args.split} of {args.config}"
    if problems:
        print(format_problems(problems))
        raise DatasetError(
            f"{len(problems)} of {len(dataset)} items of {where} cannot be read as training reads them "
            "(listed above); fix or remove those files and run atrous check-data again"
        )
    print(f"{where}: all {len(dataset)} items read; images and label maps agree in size and hold only valid labels")
    return 0
