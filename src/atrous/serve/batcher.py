"""Micro-batching: concurrent requests of one image size become one call of the model.

A request waits at most ``max_wait`` seconds for others of its size (up to ``max_batch``); while
a batch runs, new requests queue, and the oldest one's size goes next, so under load batches
fill by themselves and an idle server answers after ``max_wait``. At most ``max_queue``
requests wait: one more is refused (:class:`QueueFullError`, HTTP 503) instead of growing the
queue without bound. The model runs in one worker thread, so the event loop keeps accepting
and answering (``/health``, refusals) while it computes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class QueueFullError(RuntimeError):
    """Every place in the queue is taken: the server is saturated (HTTP 503, retry later)."""


@dataclass(eq=False)  # compared by identity
class _Request:
    image: np.ndarray
    future: asyncio.Future
    arrived: float
    shape: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.shape = self.image.shape


@dataclass
class BatchStats:
    """What the batcher did: requests answered, model calls, the largest batch."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0

    def as_dict(self) -> dict[str, Any]:
        mean = self.requests / self.batches if self.batches else 0.0
        return {"requests": self.requests, "batches": self.batches, "largest_batch": self.largest_batch,
                "mean_batch": round(mean, 3)}


class MicroBatcher:
    """Group images of one size into calls of ``run_batch`` (a list of ``(H, W, 3)`` images →
    one result per image, in order), from the asyncio event loop it is started in."""

    def __init__(self, run_batch: Callable[[Sequence[np.ndarray]], Sequence[Any]], *, max_batch: int = 8,
                 max_wait: float = 0.01, max_queue: int = 64) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError(f"max_batch and max_queue must be >= 1 and max_wait >= 0, got {max_batch}, {max_queue}, {max_wait}")
        self.run_batch, self.max_batch, self.max_wait, self.max_queue = run_batch, max_batch, max_wait, max_queue
        self.stats = BatchStats()
        self._pending: list[_Request] = []
        self._running = 0  # requests in the batch being computed
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atrous-model")

    @property
    def waiting(self) -> int:
        """Requests queued or being computed."""
        return len(self._pending) + self._running

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Answer every queued request, then stop (graceful shutdown)."""
        self._closing = True
        if self._arrived is not None:
            self._arrived.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def submit(self, image: np.ndarray) -> Any:
        """The result for ``image``, computed in a batch with other images of its size."""
        if self._closing:
            raise QueueFullError("the server is shutting down")
        if len(self._pending) >= self.max_queue:
            raise QueueFullError(f"{len(self._pending)} requests are queued (the limit, --max-queue); retry later")
        loop = asyncio.get_running_loop()
        request = _Request(image, loop.create_future(), time.monotonic())
        self._pending.append(request)
        self._arrived.set()
        return await request.future

    async def _loop(self) -> None:
        while True:
            self._pending = [r for r in self._pending if not r.future.cancelled()]  # clients that left
            if not self._pending:
                if self._closing:
                    return
                await self._wait(None)
                continue
            oldest = self._pending[0]
            group = [r for r in self._pending if r.shape == oldest.shape]
            remaining = oldest.arrived + self.max_wait - time.monotonic()
            if len(group) < self.max_batch and remaining > 0 and not self._closing:
                await self._wait(remaining)
                continue
            batch = group[: self.max_batch]
            taken = set(map(id, batch))
            self._pending = [r for r in self._pending if id(r) not in taken]
            await self._run(batch)

    async def _wait(self, timeout: float | None) -> None:
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _run(self, batch: list[_Request]) -> None:
        self._running = len(batch)
        try:
            results = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.run_batch, [r.image for r in batch])
        except Exception as err:  # noqa: BLE001 - handed to each request, which reports it
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(err)
        else:
            for r, result in zip(batch, results, strict=True):
                if not r.future.done():
                    r.future.set_result(result)
            self.stats.requests += len(batch)
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        finally:
            self._running = 0
