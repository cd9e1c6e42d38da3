"""A training run owns its ``output_dir``: one run per folder, one process at a time.

* :func:`claim_output_dir` refuses a folder that holds a previous run's outputs
  (:data:`RUN_OUTPUTS`) unless the run continues it (``--resume``) or replaces it
  (``--overwrite``: the old outputs are moved aside into ``replaced-<UTC time>/``, never deleted).
* :class:`RunLock` is a lock file (``.atrous-fit.lock``, created with ``O_EXCL``, holding the PID
  and host) that refuses a second concurrent run into the same folder. A lock left by a process
  that died on this host (SIGKILL, power loss) is taken over.

Files other than :data:`RUN_OUTPUTS` (a user's notes, ``validate/``, the demo's overlays) are
never touched.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from ..errors import InputError, OutputExistsError
from ..io import move_aside, output_folder

log = logging.getLogger(__name__)

RUN_OUTPUTS = ("checkpoints", "csv", "tb", "metrics.json", "splits", "class_weights.json")  # what `atrous fit` writes
LOCK_NAME = ".atrous-fit.lock"


def previous_outputs(output_dir: Path) -> list[Path]:
    """The outputs of an earlier run in ``output_dir`` (empty folders do not count)."""
    found = []
    for name in RUN_OUTPUTS:
        path = output_dir / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(path)
    return found


def claim_output_dir(output_dir: Path, *, resume: bool, overwrite: bool) -> Path | None:
    """Check that a new run may write into ``output_dir``; returns the folder the previous run
    was moved to under ``overwrite`` (``None`` if nothing was moved).

    Raises:
        OutputExistsError: the folder holds a previous run and neither flag is given.
        InputError: both flags are given.
    """
    if resume and overwrite:
        raise InputError("--resume and --overwrite exclude each other: continue the run or replace it")
    old = previous_outputs(output_dir)
    if not old or resume:
        return None
    names = ", ".join(p.name for p in old)
    if not overwrite:
        raise OutputExistsError(
            f"{output_dir} already holds a training run ({names}); pass --resume to continue it, "
            "--overwrite to replace it, or choose another train.output_dir"
        )
    aside = move_aside(old, output_dir)
    log.warning("atrous fit --overwrite: moved the previous run's %s from %s to %s", names, output_dir, aside)
    return aside


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """``with RunLock(output_dir):`` — hold ``output_dir/.atrous-fit.lock`` for the block.

    The lock file is created atomically (``O_CREAT | O_EXCL``) and holds
    ``{"pid": ..., "host": ...}``; it is removed when the block exits, also on exceptions.
    A lock whose PID no longer runs on this host is stale and is taken over; a lock of another
    host cannot be checked and is refused (remove the file by hand once that run is gone).
    """

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> RunLock:
        output_folder(self.path.parent, "train.output_dir")
        for _ in range(3):
            if self._create():
                return self
            holder = self._holder()
            if not holder:  # released, or still being written, between our attempt and the read
                time.sleep(0.1)
                continue
            if holder.get("host") == self.owner["host"] and not _alive(int(holder.get("pid", -1))):
                log.warning("atrous fit: taking over the stale lock %s of process %s (no longer running)",
                            self.path, holder.get("pid"))
                self._remove_if(holder)
                continue
            raise OutputExistsError(
                f"{self.path.parent} is in use by another training run (PID {holder.get('pid')} on "
                f"{holder.get('host')}, lock file {self.path}); wait for it to finish or choose another "
                "train.output_dir"
            )
        raise OutputExistsError(
            f"{self.path}: cannot take the run lock (the file is unreadable); remove it if no run uses {self.path.parent}"
        )

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as file:
            json.dump(self.owner, file)
        return True

    def _holder(self) -> dict | None:
        """The lock file's owner; ``{}`` when unreadable (being written, or not ours)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno == errno.ENOENT:
                return None
            raise
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _remove_if(self, holder: dict) -> None:
        """Remove the stale lock unless another process replaced it meanwhile: rename it to a
        name of our own first, then check what was renamed."""
        claimed = self.path.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
        try:
            os.rename(self.path, claimed)
        except FileNotFoundError:
            return
        try:
            current = json.loads(claimed.read_text())
        except (OSError, json.JSONDecodeError):
            current = {}
        if current != holder:  # a live run took it over first: give it back
            try:
                os.link(claimed, self.path)
            except FileExistsError:
                pass
        claimed.unlink(missing_ok=True)
