"""``atrous check-data``: read whole splits as training reads them; class pixel histograms."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data.choices import SPLIT_SECTIONS
from ..errors import InputError
from .options import with_config


def add_check_data(sub: argparse._SubParsersAction) -> None:
    chk = with_config(sub.add_parser(
        "check-data", help="read every image and label map of the splits, list every problem, count class pixels"))
    chk.add_argument("--split", nargs="+", default=["train", "val"], choices=list(SPLIT_SECTIONS),
                     help="which data.<split> to scan (default: train val)")
    chk.add_argument("--output", type=Path, metavar="DIR",
                     help="also write DIR/class_pixels.json and DIR/class_pixels.png (a bar chart per split)")
    chk.add_argument("--overwrite", action="store_true",
                     help="move an existing class_pixels.* in --output aside into replaced-<time>/")
    chk.add_argument("--num-workers", type=int, help="processes reading files (default: data.num_workers, else 0)")
    chk.add_argument("--no-progress", action="store_true", help="no progress bar")
    chk.set_defaults(func=check_data_command)


def check_data_command(args: argparse.Namespace) -> int:
    from ..data.base import DatasetError
    from ..data.build import bounded_workers
    from ..data.check import check_splits, format_class_table, format_problems
    from ..data.class_pixels import CHART_NAME, JSON_NAME, write_class_pixels
    from ..io import claim_outputs, output_folder

    data_cfg = args.experiment.mapping().get("data") or {}
    workers = args.num_workers if args.num_workers is not None else int(data_cfg.get("num_workers", 0))
    if workers < 0:
        raise InputError(f"--num-workers {workers}: give 0 (read in this process) or more worker processes")
    workers = bounded_workers(workers, "--num-workers" if args.num_workers is not None else "data.num_workers")
    if args.output is not None:
        output_folder(args.output, "--output", create=False)
        aside = claim_outputs(args.output, (JSON_NAME, CHART_NAME), overwrite=args.overwrite)
        if aside is not None:
            print(f"Moved the earlier {JSON_NAME} and {CHART_NAME} from {args.output} to {aside}")
    splits = list(dict.fromkeys(args.split))
    checks, classes = check_splits(data_cfg, splits, num_workers=workers, progress=not args.no_progress)
    problems = [p for c in checks for p in c.problems]
    if problems:
        print(format_problems(problems))
    print(format_class_table(checks))
    for check in checks:
        for note in check.notes:
            print(note)
    if args.output is not None:
        json_path, chart = write_class_pixels(args.output, {c.split or "all": c.counts for c in checks}, classes)
        print(f"class pixels: {json_path}, {chart}")
    where = " and ".join(c.where for c in checks) + f" of {args.config}"
    if problems:
        unreadable = sum(p.index is not None for p in problems)
        items = sum(c.items for c in checks)
        unread = f" ({unreadable} of {items} items cannot be read as training reads them)" if unreadable else ""
        count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
        raise DatasetError(f"{count} in {where}{unread}, listed above; fix them and run atrous check-data again")
    total = sum(c.items for c in checks)
    print(f"{where}: all {total} items read; images and label maps agree in size and hold only valid labels")
    return 0
