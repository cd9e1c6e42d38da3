"""Peak memory of one call, on CUDA and on CPU, with the same meaning on both.

``peak_memory_mb`` is the most tensor memory the call holds at once beyond what existed before
it (activations, gradients, temporaries; not the weights and inputs):

* CUDA: ``torch.cuda.max_memory_allocated()`` during the call minus ``memory_allocated()``
  before it (``max_memory_allocated_mb`` keeps the absolute peak);
* CPU: PyTorch has no allocator statistics for CPU, so :class:`LiveTensorMemory` counts them:
  a ``TorchDispatchMode`` that adds the storage size of every tensor an op creates and
  subtracts it when the storage is freed. It is exact for tensors and independent of the
  allocator's caching; oneDNN's internal scratch space is not a tensor and is not counted.
  Code compiled by ``torch.compile`` bypasses the dispatcher, so compiled models get the RSS
  figure below instead.

``peak_rss_increase_mb`` (CPU, Linux) is the process's resident-set high-water mark
(``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim``) minus the resident size
before the call: what the allocator took from the OS, which memory cached by earlier calls can
hide. Elsewhere it is the growth of ``resource.getrusage``'s all-time ``ru_maxrss``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

MB = 2**20


class LiveTensorMemory(TorchDispatchMode):
    """Within ``with LiveTensorMemory() as m:``, ``m.peak`` is the most bytes held at once by
    CPU tensors created inside the block (views and in-place results of existing tensors excluded)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._sizes: dict[int, int] = {}

    def _release(self, key: int) -> None:
        self.live -= self._sizes.pop(key, 0)

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if not isinstance(tensor, torch.Tensor) or tensor.device.type != "cpu":
                continue
            storage = tensor.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self._sizes or storage.nbytes() == 0:
                continue  # a view or an in-place result of an existing tensor, or already counted
            self._sizes[key] = storage.nbytes()
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
            weakref.finalize(storage, self._release, key)  # fires when the storage is freed
        return out


def peak_memory(fn: Callable[[], Any], device: torch.device, *, compiled: bool = False) -> dict[str, Any]:
    """Run ``fn`` once (twice on CPU: tensors, then RSS) and report its peak memory in MiB."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "peak_memory_mb": round((peak - before) / MB, 1),
            "max_memory_allocated_mb": round(peak / MB, 1),
            "memory_measure": "cuda: max_memory_allocated during the run minus memory_allocated before",
        }
    rss = peak_rss_increase(fn)
    if compiled:
        return {"peak_memory_mb": rss, "peak_rss_increase_mb": rss,
                "memory_measure": "cpu: peak resident-set increase (compiled code bypasses the tensor count)"}
    with LiveTensorMemory() as tracker:
        fn()
    return {
        "peak_memory_mb": round(tracker.peak / MB, 1),
        "peak_rss_increase_mb": rss,
        "memory_measure": "cpu: peak of live tensor memory created during the run (dispatch-mode count)",
    }


def peak_rss_increase(fn: Callable[[], Any]) -> float:
    """MiB the process's peak resident set grows over its size before ``fn()`` (a lower bound)."""
    gc.collect()
    _malloc_trim()
    if _reset_peak_rss():
        before = _proc_status_kb("VmRSS")
        fn()
        grown = _proc_status_kb("VmHWM") - before
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        fn()
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        grown = grown // 1024 if sys.platform == "darwin" else grown  # bytes on macOS, KiB on Linux
    return round(max(grown, 0) / 1024, 1)


def resident_mb(settle: bool = False) -> float | None:
    """The process's resident set now, MiB (Linux; ``None`` where ``/proc`` is missing);
    ``settle``: first collect garbage and give freed heap memory back to the OS, so that what
    remains is memory in use rather than what the allocator keeps cached."""
    if settle:
        gc.collect()
        _malloc_trim()
    try:
        return round(_proc_status_kb("VmRSS") / 1024, 1)
    except (OSError, KeyError):
        return None


def _proc_status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (Linux ≥ 4.0); ``False`` where that is impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _proc_status_kb("VmHWM")
        return True
    except (OSError, KeyError):
        return False


def _malloc_trim() -> None:
    """Give freed heap memory back to the OS (glibc), so that the next peak is measured afresh."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
