#!/usr/bin/env python3
"""Rewrite src/atrous/models/figures.json: the figures ``atrous zoo`` and ``atrous info`` print
for the packaged configs, measured on the meta device (see :mod:`atrous.models.figures`).

    python scripts/declare_figures.py          # after a packaged config or an architecture changes
"""

from __future__ import annotations

import json

from atrous.models.figures import FIGURES_FILE, measure_declared

if __name__ == "__main__":
    figures = measure_declared()
    FIGURES_FILE.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"{FIGURES_FILE}: {len(figures['configs'])} configs, {len(figures['models'])} distinct models")
