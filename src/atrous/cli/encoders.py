"""``atrous encoders``: the encoders a model can use; ``--table`` regenerates docs/encoders.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PAGE_START = "<!-- encoders:start -->"
PAGE_END = "<!-- encoders:end -->"


def add_encoders(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encoders", help="list the encoders; --table measures the verified timm family table")
    p.add_argument("--dilatable", action="store_true", help="only encoders proven at output stride 8 and 16")
    p.add_argument("--table", action="store_true",
                   help="measure one timm model per family (grid agreement, strides, params, GFLOPs, ONNX/OpenVINO parity)")
    p.add_argument("--models", nargs="+", metavar="MODEL", help="timm models to measure (default: one per family)")
    p.add_argument("--no-export", action="store_true", help="skip the ONNX/OpenVINO parity columns")
    p.add_argument("--output", type=Path, metavar="PAGE.md",
                   help=f"replace the table between {PAGE_START} and {PAGE_END} in this page (docs/encoders.md)")
    p.set_defaults(func=encoders_command)


def encoders_command(args: argparse.Namespace) -> int:
    from ..errors import InputError

    if not args.table:
        from ..models.api import list_encoders

        for name in list_encoders(dilatable=args.dilatable):
            print(name)
        return 0
    from ..deploy.encoder_table import REPRESENTATIVES, build_table, render, summary
    from ..io import atomic_write

    page = None
    if args.output is not None:
        if not args.output.is_file() or PAGE_START not in (page := args.output.read_text()) or PAGE_END not in page:
            raise InputError(f"{args.output}: needs the markers {PAGE_START} and {PAGE_END} around the table to replace")
    rows = build_table(args.models or REPRESENTATIVES, export=not args.no_export,
                       progress=lambda line: print(line, file=sys.stderr, flush=True))
    table = render(rows) + "\n" + summary(rows)
    if page is None:
        print(table, end="")
        return 0
    head, rest = page.split(PAGE_START, 1)
    tail = rest.split(PAGE_END, 1)[1]
    text = f"{head}{PAGE_START}\n{table}{PAGE_END}{tail}"
    atomic_write(args.output, lambda tmp: tmp.write_text(text))
    print(f"{args.output}: {len(rows)} rows. {summary(rows)}", end="")
    return 0
