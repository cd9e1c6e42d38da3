"""The micro-batcher of ``atrous serve`` on its own: images of one size share model calls of at
most ``max_batch``, sizes are never mixed, each answer reaches its request, a full queue refuses,
a failing call fails only its requests, and stopping answers what is queued."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from atrous.serve.batcher import MicroBatcher, QueueFullError


def run_async(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))  # bounded: a hang fails the test


class Recorder:
    """A model stand-in: each image → its pixel sum; records the batches it was called with."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[tuple[int, ...]]] = []
        self.gate = gate

    def __call__(self, images):
        if self.gate is not None:
            assert self.gate.wait(30)
        self.batches.append([image.shape for image in images])
        return [int(image.sum()) for image in images]


def images(*shapes, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]


def test_concurrent_images_of_one_size_become_batches_of_at_most_max_batch():
    model = Recorder()
    inputs = images(*[(4, 6)] * 5)

    async def scenario():
        batcher = MicroBatcher(model, max_batch=2, max_wait=3600)  # full batches go at once; the last on stop
        await batcher.start()
        answers = asyncio.gather(*(batcher.submit(image) for image in inputs))
        await asyncio.sleep(0)
        await batcher.stop()
        return await answers

    assert run_async(scenario()) == [int(image.sum()) for image in inputs]
    assert [len(batch) for batch in model.batches] == [2, 2, 1]


def test_sizes_are_never_mixed_in_a_batch_and_each_answer_goes_to_its_request():
    model = Recorder()
    inputs = images((4, 6), (5, 6), (4, 6), (5, 6), (4, 6))

    async def scenario():
        batcher = MicroBatcher(model, max_batch=8, max_wait=0.05)
        await batcher.start()
        answers = await asyncio.gather(*(batcher.submit(image) for image in inputs))
        await batcher.stop()
        return answers

    assert run_async(scenario()) == [int(image.sum()) for image in inputs]
    assert sorted(model.batches) == [[(4, 6, 3)] * 3, [(5, 6, 3)] * 2]


def test_a_full_queue_refuses_and_a_failing_batch_fails_only_its_requests():
    gate = threading.Event()
    model = Recorder(gate)

    async def scenario():
        batcher = MicroBatcher(model, max_batch=1, max_wait=0, max_queue=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(images((4, 6))[0]))
        for _ in range(3000):  # bounded: until the first is being computed
            if batcher.waiting == 1 and not batcher._pending:
                break
            await asyncio.sleep(0.01)
        queued = [asyncio.ensure_future(batcher.submit(image)) for image in images((4, 6), (4, 6), seed=1)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError, match="2 requests are queued"):
            await batcher.submit(images((4, 6))[0])
        gate.set()
        answers = [await first, *[await q for q in queued]]
        batcher.run_batch = lambda batch: 1 / 0
        with pytest.raises(ZeroDivisionError):
            await batcher.submit(images((4, 6))[0])
        batcher.run_batch = model
        answers.append(await batcher.submit(images((2, 2))[0]))
        await batcher.stop()
        return answers

    answers = run_async(scenario())
    assert answers[1:3] == [int(image.sum()) for image in images((4, 6), (4, 6), seed=1)]
    assert answers[3] == int(images((2, 2))[0].sum())
