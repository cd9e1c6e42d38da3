"""``atrous serve``: the API answers what ``atrous predict`` writes, concurrent requests are
batched without mixing images, every bad request gets its status (never a crash), a full queue
503, and SIGTERM lets an in-flight request finish."""

from __future__ import annotations

import base64
import io
import json
import signal
import struct
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers_predict import predict, random_image, tiny_checkpoint
from helpers_serve import serve_process, wait_until
from PIL import Image
from test_serve_batcher import images

from atrous.cli import main

fastapi = pytest.importorskip("fastapi", reason='atrous serve needs the serve extra: pip install "atrous[serve]"')

from atrous.serve.app import create_app, running  # noqa: E402
from atrous.serve.limits import Limits  # noqa: E402
from atrous.serve.service import load_segmenter  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def segmenter(checkpoint):
    return load_segmenter(str(checkpoint), device="cpu")


@pytest.fixture(scope="module")
def url(segmenter):
    limits = Limits(max_bytes=50_000, max_pixels=64 * 64, max_wait=0.05)
    with running(create_app(segmenter, limits)) as base:
        yield base


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_the_api_answers_what_atrous_predict_writes(url, checkpoint, tmp_path):
    image = random_image(tmp_path / "street.png", (24, 40))
    assert predict(checkpoint, str(tmp_path / "street.png"), "--output", str(tmp_path / "out")) == 0
    expected_labels = np.asarray(Image.open(tmp_path / "out" / "street_labels.png"))
    body = (tmp_path / "street.png").read_bytes()

    labels = requests.post(f"{url}/segment?format=labels", data=body, timeout=60)
    assert labels.status_code == 200 and labels.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(decode_png(labels.content), expected_labels)
    overlay = requests.post(f"{url}/segment?format=overlay", data=body, timeout=60)
    np.testing.assert_array_equal(decode_png(overlay.content), np.asarray(Image.open(tmp_path / "out" / "street_overlay.png")))
    color = requests.post(f"{url}/segment?format=color", data=body, timeout=60)
    np.testing.assert_array_equal(decode_png(color.content), np.asarray(Image.open(tmp_path / "out" / "street_color.png")))

    answer = requests.post(f"{url}/segment?labels=true", data=body, timeout=60).json()
    assert (answer["height"], answer["width"]) == image.shape[:2]
    np.testing.assert_array_equal(decode_png(base64.b64decode(answer["labels_png"])), expected_labels)
    counts = np.bincount(expected_labels.ravel(), minlength=3)
    palette = {c["id"]: c["color"] for c in requests.get(f"{url}/classes", timeout=10).json()}
    assert [(c["id"], c["name"], c["pixels"], c["color"]) for c in answer["classes"]] == [
        (i, "abc"[i], int(counts[i]), palette[i]) for i in sorted(np.flatnonzero(counts), key=lambda i: -counts[i])]
    assert sum(c["share"] for c in answer["classes"]) == pytest.approx(1.0)
    assert answer["latency_ms"] > 0


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(url, segmenter):
    inputs = images(*[(16, 24)] * 6, seed=5)
    alone = [segmenter.labels([image])[0] for image in inputs]  # one image per model call
    before = requests.get(f"{url}/health", timeout=10).json()["batching"]
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda image: requests.post(f"{url}/segment?format=labels", data=png_bytes(image),
                                                             timeout=60), inputs))
    assert [a.status_code for a in answers] == [200] * 6
    for answer, expected in zip(answers, alone, strict=True):
        np.testing.assert_array_equal(decode_png(answer.content), expected)
    after = requests.get(f"{url}/health", timeout=10).json()["batching"]
    assert after["requests"] - before["requests"] == 6
    assert after["batches"] - before["batches"] < 6  # some requests shared a model call


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` pixels, in a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_bad_requests_get_their_status_and_the_reason(url):
    good = png_bytes(images((16, 24))[0])
    cases = {
        "too many bytes": (b"\0" * 60_000, 413, "more than the limit of 50,000"),
        "pixel bomb": (bomb_png(100_000, 100_000), 413, "10,000,000,000 pixels, more than the limit of 4,096"),
        "corrupt": (good[: len(good) // 2], 400, "upload: cannot decode this image"),
        "not an image": (b"hello", 400, "not an image format Pillow reads"),
        "empty": (b"", 400, "empty body"),
        "smaller than the output stride": (png_bytes(images((4, 4))[0]), 400, "smaller than the model's output stride 8"),
    }
    for name, (body, status, reason) in cases.items():
        answer = requests.post(f"{url}/segment", data=body, timeout=60)
        assert (answer.status_code, name) == (status, name)
        assert reason in answer.json()["detail"], name
    assert requests.post(f"{url}/segment?format=jpeg", data=good, timeout=60).status_code == 422
    assert requests.post(f"{url}/segment", data=good, timeout=60).status_code == 200  # still serving


def test_health_classes_page_and_openapi_docs(url):
    health = requests.get(f"{url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["num_classes"] == 3 and "torch fp32" in health["model"]
    assert [c["name"] for c in requests.get(f"{url}/classes", timeout=10).json()] == ["a", "b", "c"]
    page = requests.get(f"{url}/", timeout=10)
    assert page.headers["content-type"].startswith("text/html") and 'id="opacity"' in page.text
    schema = requests.get(f"{url}/openapi.json", timeout=10).json()
    assert {"/segment", "/health", "/classes"} <= set(schema["paths"])
    assert "swagger" in requests.get(f"{url}/docs", timeout=10).text.lower()


def test_a_full_queue_answers_503_and_the_server_recovers(segmenter):
    gate = threading.Event()
    blocked = type(segmenter)(segmenter.predictor, segmenter.classes, segmenter.name)
    blocked.labels = lambda batch: (gate.wait(30), segmenter.labels(batch))[1]
    body = png_bytes(images((16, 24))[0])
    with running(create_app(blocked, Limits(max_batch=1, max_wait=0, max_queue=1))) as base, ThreadPoolExecutor(2) as pool:
        post = lambda: requests.post(f"{base}/segment?format=labels", data=body, timeout=60)  # noqa: E731
        computing = pool.submit(post)
        wait_until(lambda: requests.get(f"{base}/health", timeout=10).json()["waiting"] == 1)
        queued = pool.submit(post)
        wait_until(lambda: requests.get(f"{base}/health", timeout=10).json()["waiting"] == 2)
        refused = post()
        assert refused.status_code == 503 and "retry later" in refused.json()["detail"]
        gate.set()
        assert computing.result().status_code == queued.result().status_code == 200
        assert post().status_code == 200


def test_sigterm_finishes_the_request_in_flight_then_exits_0(checkpoint):
    body = png_bytes(images((16, 24))[0])
    # A request waits 3 s for company: SIGTERM arrives while it is in flight.
    with serve_process(["--checkpoint", str(checkpoint), "--max-wait-ms", "3000"]) as (proc, base), \
            ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(lambda: requests.post(f"{base}/segment?format=labels", data=body, timeout=60))
        wait_until(lambda: requests.get(f"{base}/health", timeout=10).json()["waiting"] == 1)
        proc.send_signal(signal.SIGTERM)
        answer = in_flight.result()
        assert answer.status_code == 200 and decode_png(answer.content).shape == (16, 24)
        # uvicorn re-raises the signal once shut down, so the exit is SIGTERM's, after a clean shutdown
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        log = proc.stdout.read()
    assert "Waiting for application shutdown" in log and "Finished server process" in log, log


def test_without_the_extra_serve_says_what_to_install(checkpoint, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "fastapi", None)
    assert main(["serve", "--checkpoint", str(checkpoint)]) == 2
    assert 'pip install "atrous[serve]"' in capsys.readouterr().err


@pytest.mark.slow
def test_published_weights_placed_locally_serve_the_page_and_the_api(tmp_path):
    """``atrous serve --weights deeplabv3-mobilenet-v3-large-coco-voc`` with the weights file
    placed in torch.hub's folder (no network): torchvision's network with random weights, saved
    under the entry's name and checksum, stands in for the published file."""
    import torch
    from helpers_models import randomized_batchnorm
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    from atrous.data.transforms import NORMALIZATIONS
    from atrous.models.pretrained import sha256_of

    torch.manual_seed(3)
    reference = randomized_batchnorm(deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                  num_classes=21, aux_loss=True)).eval()
    placed = tmp_path / "torch" / "hub" / "checkpoints" / "weights.pth"
    placed.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), placed)
    prefix = sha256_of(placed)[:8]
    placed = placed.rename(placed.with_name(f"deeplabv3_mobilenet_v3_large-{prefix}.pth"))
    prelude = (  # the registry's entry, pointed at the placed file's name and checksum
        "import dataclasses\nfrom atrous import PUBLISHED_WEIGHTS\n"
        "name = 'deeplabv3-mobilenet-v3-large-coco-voc'\n"
        f"PUBLISHED_WEIGHTS[name] = dataclasses.replace(PUBLISHED_WEIGHTS[name], url='file:///nowhere/{placed.name}', "
        f"file_name={placed.name!r}, sha256_prefix={prefix!r})\n"
    )
    image = images((40, 56), seed=2)[0]
    env = {"TORCH_HOME": str(tmp_path / "torch")}
    with serve_process(["--weights", "deeplabv3-mobilenet-v3-large-coco-voc", "--precision", "fp32"], prelude=prelude, env=env,
                       startup_s=300) as (_, base):
        assert 'id="legend"' in requests.get(f"{base}/", timeout=30).text
        assert requests.get(f"{base}/classes", timeout=30).json()[15]["name"] == "person"
        answer = requests.post(f"{base}/segment?format=labels", data=png_bytes(image), timeout=120)
        assert answer.status_code == 200
    mean, std = (torch.tensor(v)[:, None, None] for v in NORMALIZATIONS["imagenet"])
    x = (torch.from_numpy(image).permute(2, 0, 1).float() / 255 - mean) / std
    with torch.no_grad():
        expected = reference(x[None])["out"].argmax(1)[0].numpy()
    assert len(np.unique(expected)) > 1
    assert (decode_png(answer.content) == expected).mean() > 0.99  # float rounding may flip a near-tie


@pytest.mark.slow
def test_the_load_benchmark_reports_every_level_without_errors(checkpoint, tmp_path):
    out = tmp_path / "load.json"
    args = ["benchmark-serve", "--checkpoint", str(checkpoint), "--requests", "6", "--concurrency", "1", "3",
            "--image-size", "16", "24", "--max-batch", "3", "--output", str(out)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["errors"] == 0 and set(report["batching_gain"]) == {"1", "3"}
    assert [(r["batching"], r["concurrency"], r["requests"], r["errors"]) for r in report["runs"]] == [
        ("one image per call", 1, 6, 0), ("micro-batched", 1, 6, 0), ("one image per call", 3, 6, 0), ("micro-batched", 3, 6, 0)]
    for run in report["runs"]:
        assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] and run["throughput_rps"] > 0
        assert set(run["rss_mb"]) == {"before", "after"}
    assert [r["mean_batch"] for r in report["runs"] if r["max_batch"] == 1] == [1.0, 1.0]
    assert isinstance(report["rss_growth_mb"], float) and isinstance(report["rss_growth_on_repeat_mb"], float)


@pytest.mark.slow
def test_an_exported_engine_serves_batches_as_the_torch_model_does(checkpoint, segmenter, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the export extra")
    from atrous.engines import EngineOptions

    onnx = load_segmenter(str(checkpoint), device="cpu", engine=EngineOptions(engine="onnxruntime", cache_dir=tmp_path))
    inputs = images(*[(16, 24)] * 3, seed=9)
    with running(create_app(onnx, Limits(max_wait=0.2))) as base, ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda image: requests.post(f"{base}/segment?format=labels", data=png_bytes(image),
                                                             timeout=120), inputs))
        assert "onnxruntime fp32" in requests.get(f"{base}/health", timeout=10).json()["model"]
    for answer, image in zip(answers, inputs, strict=True):
        expected = segmenter.labels([image])[0]
        assert (decode_png(answer.content) == expected).mean() > 0.99  # float rounding may flip a near-tie


def test_a_port_in_use_is_one_error_line(checkpoint, capsys):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--checkpoint", str(checkpoint), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"atrous: error: cannot listen on 127.0.0.1:{port} (") and err.endswith("choose another --port or --host")
