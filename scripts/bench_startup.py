#!/usr/bin/env python3
"""How fast the command line starts: wall time and peak memory of ``atrous --help``, every
``atrous <command> --help``, ``atrous zoo`` and ``atrous info --config NAME``, each in a fresh
process, against the goals (help: 0.5 s and 200 MB; zoo and info: 2 s).

    python scripts/bench_startup.py                 # the atrous this interpreter imports
    python scripts/bench_startup.py --repeats 5     # more runs per command (the median is shown)
    PYTHONPATH=/other/checkout/src python scripts/bench_startup.py   # another checkout

Each command runs as ``python -m atrous.cli ...`` in a child process; its peak resident memory is
the child's own ``ru_maxrss`` (``os.wait4``), its time the wall clock from start to exit.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HELP_GOAL = (0.5, 200.0)  # seconds, MB
MODEL_GOAL = (2.0, None)
INFO_CONFIG = "denseaspp/denseaspp161_cityscapes"  # the largest packaged network


def run_once(args: list[str]) -> tuple[float, float, int]:
    """(seconds, peak MB, exit status) of ``python -m atrous.cli *args`` in a child process."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "atrous.cli", *args],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        sys.exit(f"atrous {' '.join(args)} failed ({child.returncode}): {child.stderr.read().decode()[-500:]}")
    child.stderr.close()
    return seconds, usage.ru_maxrss / 1024, child.returncode  # ru_maxrss is in KiB on Linux


def commands() -> list[str]:
    """The commands ``atrous --help`` lists (its ``{fit,validate,...}`` line)."""
    text = subprocess.run([sys.executable, "-m", "atrous.cli", "--help"], capture_output=True, text=True,
                          check=True).stdout
    match = re.search(r"\{([a-z,-]+)\}", text)
    if match is None:
        sys.exit("atrous --help lists no commands")
    return match.group(1).split(",")


def measure(args: list[str], repeats: int) -> tuple[float, float]:
    """The median time and the largest peak memory over ``repeats`` runs."""
    runs = [run_once(args) for _ in range(repeats)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per command (default 3)")
    parser.add_argument("--info-config", default=INFO_CONFIG, help=f"the config of `atrous info` (default {INFO_CONFIG})")
    args = parser.parse_args()

    jobs = [(["--help"], HELP_GOAL)] + [([name, "--help"], HELP_GOAL) for name in commands()]
    jobs += [(["zoo"], MODEL_GOAL), (["info", "--config", args.info_config], MODEL_GOAL)]
    print(f"{'command':<56} {'time':>7} {'memory':>9}   goal")
    missed = 0
    for argv, (goal_s, goal_mb) in jobs:
        seconds, mb = measure(argv, args.repeats)
        ok = seconds <= goal_s and (goal_mb is None or mb <= goal_mb)
        missed += not ok
        goal = f"{goal_s} s" + (f", {goal_mb:.0f} MB" if goal_mb else "")
        print(f"{'atrous ' + ' '.join(argv):<56} {seconds:6.2f}s {mb:6.0f} MB   {goal}{'' if ok else '  MISSED'}")
    print(f"{len(jobs) - missed} of {len(jobs)} commands meet their goal "
          f"(median of {args.repeats} runs; memory: the largest peak RSS)")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
