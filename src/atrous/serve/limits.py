"""What one request to ``atrous serve`` may ask and how requests are batched (``--max-...``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Request and batching limits; each refusal is an HTTP status, never a crash."""

    max_bytes: int = 20_000_000  # request body; more: 413
    max_pixels: int = 25_000_000  # image width × height, read from the header before decoding; more: 413
    max_batch: int = 8  # images of one size in one model call
    max_wait: float = 0.01  # seconds a request waits for others of its size
    max_queue: int = 64  # requests waiting; one more: 503
