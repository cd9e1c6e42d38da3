#!/usr/bin/env python3
"""Screenshot of ``atrous serve``'s web page with a synthetic street segmented (docs/serve_page.png).

    python scripts/serve_screenshot.py --checkpoint runs/demo/checkpoints/best.ckpt --output docs/serve_page.png

Serves the checkpoint on 127.0.0.1, opens the page in headless Chromium (Debian's ``chromium``
driven by playwright), uploads a street the synthetic dataset renders and saves the page.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from atrous.data.synthetic.render import render_scene
from atrous.serve.app import create_app, running
from atrous.serve.service import load_segmenter

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--force-color-profile=srgb"]


def screenshot(checkpoint: str, output: Path, *, size: tuple[int, int] = (256, 512), seed: int = 7,
               opacity: int = 55) -> None:
    from playwright.sync_api import sync_playwright

    segmenter = load_segmenter(checkpoint, device="cpu")
    with tempfile.TemporaryDirectory() as tmp, running(create_app(segmenter)) as url, sync_playwright() as p:
        street = Path(tmp) / "street.png"
        Image.fromarray(render_scene(np.random.default_rng(seed), *size).image).save(street)
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": size[1] + 380, "height": size[0] + 260}, device_scale_factor=1)
            page.set_default_timeout(60_000)
            page.goto(url)
            page.set_input_files("#file", str(street))
            page.wait_for_selector("#legend li")
            page.locator("#opacity").fill(str(opacity))
            page.screenshot(path=str(output), full_page=True)
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output", type=Path, default=Path("docs/serve_page.png"))
    parser.add_argument("--seed", type=int, default=7, help="which synthetic street")
    args = parser.parse_args()
    screenshot(args.checkpoint, args.output, seed=args.seed)
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
