"""``atrous serve`` in a subprocess on 127.0.0.1, started and stopped with bounded waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serve_process(args: Sequence[str], *, prelude: str = "", env: dict[str, str] | None = None,
                  startup_s: float = 120) -> Iterator[tuple[subprocess.Popen, str]]:
    """Run ``atrous serve ARGS --port P`` (after the Python ``prelude``) until ``/health``
    answers; yields the process and its URL; SIGTERM (and a bounded wait) on exit."""
    port = free_port()
    code = f"{prelude}\nimport sys\nfrom atrous.cli import main\nsys.exit(main(sys.argv[1:]))"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
                   "OMP_NUM_THREADS": "1", **(env or {})}
    proc = subprocess.Popen([sys.executable, "-c", code, "serve", *args, "--port", str(port), "--device", "cpu"],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{url}/health", timeout=5).ok:
                    break
            time.sleep(0.2)
        else:
            proc.kill()
            raise AssertionError(f"atrous serve did not start:\n{proc.communicate(timeout=30)[0]}")
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_until(condition, timeout: float = 60) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds (a bounded loop)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s")
        time.sleep(0.01)
