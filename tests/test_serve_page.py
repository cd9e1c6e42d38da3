"""The web page of ``atrous serve`` in headless Chromium (Debian's ``chromium`` driven by
Playwright): an uploaded image's overlay, as the browser shows it, has exactly the colours of the
API's label map; clicking a class shows only it; the legend gives the API's area shares and the
page the request's latency. Skipped when chromium or playwright is missing (CI installs both)."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers_predict import random_image, tiny_checkpoint
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--force-color-profile=srgb"]

pytest.importorskip("fastapi", reason='atrous serve needs the serve extra: pip install "atrous[serve]"')
playwright = pytest.importorskip("playwright.sync_api", reason="the page test drives chromium with playwright (pip install playwright)")
if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
    pytest.skip("no chromium (apt-get install chromium)", allow_module_level=True)

from atrous.serve.app import create_app, running  # noqa: E402
from atrous.serve.service import load_segmenter  # noqa: E402


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    segmenter = load_segmenter(str(tiny_checkpoint(tmp_path_factory.mktemp("model"))), device="cpu")
    with running(create_app(segmenter)) as base:
        yield base


@pytest.fixture
def page(url):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 600}, device_scale_factor=1)
            page.set_default_timeout(60_000)
            page.goto(url)
            yield page
        finally:
            browser.close()


def shown(page) -> np.ndarray:
    """The canvas as the browser renders it on screen, RGB ``(H, W, 3)``."""
    box = page.locator("#view").bounding_box()
    assert all(float(box[k]).is_integer() for k in box), f"the canvas is not on the pixel grid: {box}"
    return np.asarray(Image.open(io.BytesIO(page.screenshot(clip=box))).convert("RGB"))


def test_the_page_overlays_the_apis_label_map_and_filters_classes(url, page, tmp_path):
    image = random_image(tmp_path / "street.png", (48, 72), seed=3)
    body = (tmp_path / "street.png").read_bytes()
    labels = np.asarray(Image.open(io.BytesIO(requests.post(f"{url}/segment?format=labels", data=body, timeout=60).content)))
    answer = requests.post(f"{url}/segment", data=body, timeout=60).json()
    palette = np.array([c["color"] for c in requests.get(f"{url}/classes", timeout=10).json()], dtype=np.uint8)
    assert len(np.unique(labels)) > 1

    page.set_input_files("#file", str(tmp_path / "street.png"))
    page.wait_for_selector("#legend li")
    page.locator("#opacity").fill("100")  # the overlay alone: each pixel is its class's colour
    np.testing.assert_array_equal(shown(page), palette[labels])

    legend = page.locator("#legend li")
    assert [legend.nth(i).inner_text().split("\n")[0].strip() for i in range(legend.count())] == [
        c["name"] for c in answer["classes"]]
    shares = [float(s.rstrip("%")) for s in page.locator("#legend .share").all_inner_texts()]
    assert shares == [round(100 * c["share"], 1) for c in answer["classes"]]
    assert re.fullmatch(r"latency \d+ ms \(server \d+ ms\)", page.locator("#latency").inner_text())

    chosen = answer["classes"][0]["id"]
    legend.nth(0).click()  # only this class is coloured; the rest shows the photo
    view = shown(page)
    np.testing.assert_array_equal(view[labels == chosen], palette[chosen][None].repeat((labels == chosen).sum(), 0))
    np.testing.assert_array_equal(view[labels != chosen], image[labels != chosen])
    legend.nth(0).click()  # again: every class
    np.testing.assert_array_equal(shown(page), palette[labels])


def test_a_refused_upload_is_shown_as_an_error(page, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    page.set_input_files("#file", str(tmp_path / "broken.png"))
    page.wait_for_selector("#status.error")
    assert page.locator("#status").inner_text().startswith("400: upload: cannot decode this image")


def test_the_docs_screenshot_script_runs(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("serve_screenshot", Path(__file__).parents[1] / "scripts" / "serve_screenshot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.screenshot(str(tiny_checkpoint(tmp_path)), tmp_path / "page.png", size=(64, 128))
    assert Image.open(tmp_path / "page.png").size[0] >= 128 + 380
