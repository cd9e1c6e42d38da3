"""``atrous benchmark-serve``: ``atrous serve`` under a bounded load on loopback.

Two servers are started on 127.0.0.1 in this process, one running one image per model call and
one micro-batching; after a warm-up, ``requests`` POSTs of one image are sent by 1, 4, 16 ...
concurrent clients (threads, each with its own keep-alive connection), to each server in turn at
each level. Reported per level: throughput, latency percentiles (p50, p99: from sending a request
to its last byte), the mean batch the server formed, errors (any status but 200, or a failed
connection), and the process's resident memory before and after (freed heap memory handed back
to the OS first); then micro-batching's throughput
over one image per call at each concurrency, the memory growth over the levels (the allocator
keeps the buffers of the largest batch it has seen) and, over two more runs of the last level,
the growth from one to the next: flat when nothing leaks.
"""

from __future__ import annotations

import http.client
import io
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

import numpy as np
from PIL import Image

from ..serve.app import create_app, running
from ..serve.limits import Limits
from ..serve.service import Segmenter
from .choices import LoadSettings
from .memory import resident_mb


def load_test(segmenter: Segmenter, settings: LoadSettings | None = None, *, seed: int = 0) -> dict[str, Any]:
    """Measure the API serving ``segmenter`` (see the module docstring); returns the report."""
    settings = settings or LoadSettings()
    image = np.random.default_rng(seed).integers(0, 256, (*settings.image_size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    body = buffer.getvalue()
    limits = Limits(max_wait=settings.max_wait, max_queue=max(64, 2 * max(settings.concurrency)))
    settings_by_name = {"one image per call": 1, "micro-batched": settings.max_batch}
    apps = {name: create_app(segmenter, replace(limits, max_batch=size)) for name, size in settings_by_name.items()}
    runs: list[dict[str, Any]] = []
    with running(apps["one image per call"]) as single_url, running(apps["micro-batched"]) as batched_url:
        urls = {"one image per call": single_url, "micro-batched": batched_url}
        for url in urls.values():
            _send(url, body, settings.warmup, 1, settings.timeout)
        # Interleaved, so that whatever else the machine runs weighs on both settings alike; the
        # highest level runs twice more micro-batched: the resident memory must not grow on repeats.
        levels = [(c, name) for c in settings.concurrency for name in urls]
        levels += [(settings.concurrency[-1], "micro-batched")] * 2
        for concurrency, name in levels:
            batcher = apps[name].state.batcher
            before, stats = resident_mb(settle=True), batcher.stats.as_dict()
            level = _send(urls[name], body, settings.requests, concurrency, settings.timeout)
            after = batcher.stats.as_dict()
            batches = after["batches"] - stats["batches"]
            runs.append({"batching": name, "max_batch": settings_by_name[name], "concurrency": concurrency, **level,
                         "mean_batch": round((after["requests"] - stats["requests"]) / batches, 2) if batches else 0.0,
                         "rss_mb": {"before": before, "after": resident_mb(settle=True)}})
    repeats, runs = runs[-2:], runs[:-2]
    gain = {}
    for concurrency in settings.concurrency:
        single, batched = (next(r["throughput_rps"] for r in runs if r["batching"] == b and r["concurrency"] == concurrency)
                           for b in ("one image per call", "micro-batched"))
        gain[str(concurrency)] = round(batched / single, 2) if single else None
    rss = [r["rss_mb"] for r in runs if r["rss_mb"]["before"] is not None]
    repeat_rss = [r["rss_mb"]["after"] for r in repeats]
    return {
        "model": segmenter.name, "image_size": list(settings.image_size), "requests_per_level": settings.requests,
        "max_wait_ms": settings.max_wait * 1000, "runs": runs, "batching_gain": gain,
        "errors": sum(r["errors"] for r in runs + repeats),
        "rss_growth_mb": round(rss[-1]["after"] - rss[0]["before"], 1) if rss else None,
        # the highest level twice more: growth from the end of the first repeat to the end of the second
        "rss_growth_on_repeat_mb": round(repeat_rss[1] - repeat_rss[0], 1) if None not in repeat_rss else None,
    }


def _send(url: str, body: bytes, count: int, concurrency: int, timeout: float) -> dict[str, Any]:
    """POST ``body`` ``count`` times from ``concurrency`` threads; latency and throughput."""
    address = urlparse(url)
    remaining = iter(range(count))
    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
        try:
            while True:
                with lock:
                    if next(remaining, None) is None:
                        return
                started = time.perf_counter()
                try:
                    connection.request("POST", "/segment?format=labels", body=body,
                                       headers={"Content-Type": "image/png"})
                    response = connection.getresponse()
                    response.read()
                    if response.status != 200:
                        errors.append(f"HTTP {response.status}")
                except (OSError, http.client.HTTPException) as err:
                    errors.append(f"{type(err).__name__}: {err}")
                    connection.close()
                    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=timeout)
                    continue
                latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(client) for _ in range(concurrency)]:
            future.result()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return {"requests": count, "errors": len(errors), "error_examples": sorted(set(errors))[:3],
            "seconds": round(elapsed, 3), "throughput_rps": round(len(latencies) / elapsed, 2),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p99": round(float(np.percentile(ms, 99)), 1),
                           "mean": round(float(ms.mean()), 1)}}


def markdown_table(report: dict[str, Any]) -> str:
    """The runs of a :func:`load_test` report as a Markdown table."""
    lines = ["| batching | concurrent clients | requests | errors | throughput (img/s) | p50 (ms) | p99 (ms) | mean batch | RSS before → after (MiB) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["runs"]:
        lines.append(f"| {r['batching']} | {r['concurrency']} | {r['requests']} | {r['errors']} | {r['throughput_rps']:.1f} | "
                     f"{r['latency_ms']['p50']:.0f} | {r['latency_ms']['p99']:.0f} | {r['mean_batch']:.2f} | "
                     f"{r['rss_mb']['before']} → {r['rss_mb']['after']} |")
    gain = ", ".join(f"{c} clients: ×{g}" for c, g in report["batching_gain"].items())
    lines.append("")
    lines.append(f"micro-batching's throughput over one image per call: {gain}; errors: {report['errors']}; "
                 f"resident memory: +{report['rss_growth_mb']} MiB over the levels, "
                 f"{report['rss_growth_on_repeat_mb']:+} MiB from one repeat of the last level to the next")
    return "\n".join(lines)


def settings_of(requests: int, concurrency: Sequence[int], image_size: Sequence[int], max_batch: int,
                max_wait_ms: float) -> LoadSettings:
    """:class:`LoadSettings` from the command line's values."""
    return LoadSettings(requests=requests, concurrency=tuple(concurrency), image_size=(image_size[0], image_size[1]),
                        max_batch=max_batch, max_wait=max_wait_ms / 1000)
