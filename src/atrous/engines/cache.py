"""The on-disk engine cache: an exported engine is built once and found again by its key.

An entry is a folder ``<cache>/<engine>-<precision>-<key>/`` holding the engine's files and a
``meta.json`` naming them. The key (:func:`engine_key`) hashes everything the files depend on:
the model's architecture (its ``repr``: every layer, dilation and padding) and weights (the bytes
of its state dict, in key order), the output stride, the shape policy, the engine and precision,
and the versions of torch and of the engine's library. A changed checkpoint, config override or
upgrade is therefore a new entry, never a stale one.

Two processes may build the same entry at once: each builds into a private temporary folder in
the cache and publishes it with one ``rename``; the first one wins, the other discards its copy
and uses the winner's. A reader sees an entry only once it is complete. An entry that cannot be
loaded (a file removed or truncated by hand) is moved aside and rebuilt.

The cache lives in ``$ATROUS_CACHE_DIR/engines`` if set, else ``$XDG_CACHE_HOME/atrous/engines``,
else ``~/.cache/atrous/engines``; ``--engine-cache DIR`` chooses another, ``--no-engine-cache``
builds into a temporary folder that is removed afterwards.

OpenVINO compiles its graph once per input size and keeps each compiled blob in the entry's
``compiled/`` folder; whole images of many sizes would grow it without end. :class:`CompiledBlobs`
bounds it: after each compilation the least recently used blobs are removed until the folder
holds at most :func:`compiled_cache_bytes` (``$ATROUS_COMPILED_CACHE_MB``, default
:data:`COMPILED_CACHE_MB`; 0: no bound). A blob's last use is its modification time, set each
time an engine compiles (or loads) that size; ``atrous-usage.json`` in the folder records which
blob files belong to which size and precision.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..io import atomic_write, changed_files, file_digests, output_folder, pid_running

META = "meta.json"
COMPILED_CACHE_MB = 1024  # the default bound of one entry's compiled blobs (about 300 input sizes of the demo model)
COMPILED_CACHE_ENV = "ATROUS_COMPILED_CACHE_MB"
USAGE = "atrous-usage.json"

def default_cache_dir() -> Path:
    """``$ATROUS_CACHE_DIR/engines``, ``$XDG_CACHE_HOME/atrous/engines`` or ``~/.cache/atrous/engines``."""
    if os.environ.get("ATROUS_CACHE_DIR"):
        return Path(os.environ["ATROUS_CACHE_DIR"]) / "engines"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "atrous" / "engines"


def model_digest(model: nn.Module) -> str:
    """sha256 of the model's architecture and weights (float64-exact: the raw bytes)."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def engine_key(model_hash: str, fields: Mapping[str, Any]) -> str:
    """20 hex digits over the model's digest and every field the built files depend on."""
    payload = json.dumps({"model": model_hash, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    meta: dict[str, Any]
    built: bool  # built by this call (False: found in the cache)

    def file(self, name: str) -> Path:
        return self.path / self.meta["files"][name]


def cached_build(
    root: Path,
    name: str,
    build: Callable[[Path], dict[str, str]],
    *,
    describe: Mapping[str, Any],
) -> CacheEntry:
    """The entry ``root/name``, built by ``build(folder) → {role: file name}`` unless present
    and intact. An entry that is incomplete, or whose files no longer have the sha256 recorded in
    its ``meta.json`` when it was built, is moved aside to ``root/.broken-<name>-<pid>`` and
    rebuilt. Build folders of builders that died (killed, out of memory) are removed first."""
    output_folder(root, "--engine-cache")
    remove_dead_builds(root)
    final = root / name
    entry = _read(final, verify=True)
    if entry is not None:
        return entry
    if final.exists():
        _move_aside(final, root)
    tmp = Path(tempfile.mkdtemp(prefix=f".building-{name}-{socket.gethostname()}-{os.getpid()}-", dir=root))
    try:
        files = build(tmp)
        missing = [f for f in files.values() if not (tmp / f).is_file()]
        if missing:
            raise RuntimeError(f"engine build did not write {missing}")
        meta = {"files": dict(files), "sha256": file_digests(tmp), **describe}
        (tmp / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        try:
            os.rename(tmp, final)
        except OSError:  # another process published the same entry first: use theirs
            found = _read(final)
            if found is None:
                raise
            return found
        return CacheEntry(final, meta, built=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read(path: Path, *, verify: bool = False) -> CacheEntry | None:
    """The entry at ``path`` if complete (and with ``verify``, every file as built), else ``None``."""
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, ValueError):
        return None
    files = meta.get("files") if isinstance(meta, dict) else None
    digests = meta.get("sha256") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not isinstance(digests, dict) or not all((path / f).is_file() for f in files.values()):
        return None
    if verify and (changed := changed_files(path, digests)):
        print(f"atrous: the cached engine {path} changed on disk since it was built ({', '.join(changed)}); "
              "rebuilding it", file=sys.stderr)
        return None
    return CacheEntry(path, meta, built=False)


BUILD_PREFIX = ".building-"


def remove_dead_builds(root: Path) -> list[Path]:
    """Remove ``root/.building-<name>-<host>-<pid>-<random>`` folders whose builder, on this
    host, no longer runs; returns them."""
    removed, host = [], socket.gethostname()
    try:
        folders = [p for p in root.iterdir() if p.name.startswith(BUILD_PREFIX) and p.is_dir()]
    except OSError:
        return []
    for folder in folders:
        head, _, rest = folder.name.rpartition("-")[0].rpartition("-")
        if not rest.isdigit() or not head.endswith(f"-{host}") or pid_running(int(rest)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def discard_entry(path: Path) -> None:
    """Remove a damaged entry (moved aside first, so a reader never sees half of one)."""
    _move_aside(path, path.parent)


def _move_aside(path: Path, root: Path) -> None:
    target = root / f".broken-{path.name}-{os.getpid()}"
    shutil.rmtree(target, ignore_errors=True)
    try:
        os.rename(path, target)
    except OSError:
        pass  # another process moved or replaced it: build ours, the rename below sorts it out
    shutil.rmtree(target, ignore_errors=True)


def entries(root: Path) -> Iterable[CacheEntry]:
    """Complete entries under ``root`` (for ``atrous`` to list or a user to prune)."""
    if not root.is_dir():
        return []
    found = (_read(p) for p in sorted(root.iterdir()) if not p.name.startswith("."))
    return [e for e in found if e is not None]


# -- OpenVINO's compiled blobs: a size bound, least recently used first out ------------------------

def compiled_cache_bytes() -> int | None:
    """The bound of an entry's ``compiled/`` folder in bytes: ``$ATROUS_COMPILED_CACHE_MB``
    (megabytes, may be fractional), else :data:`COMPILED_CACHE_MB`; ``None`` (no bound) for 0."""
    text = os.environ.get(COMPILED_CACHE_ENV, "").strip()
    try:
        megabytes = float(text) if text else COMPILED_CACHE_MB
    except ValueError:
        megabytes = -1.0
    if not megabytes >= 0 or megabytes == float("inf"):
        raise InputError(f"{COMPILED_CACHE_ENV}={text}: a size in megabytes (0: no bound), e.g. {COMPILED_CACHE_MB}")
    return int(megabytes * 2**20) or None


class CompiledBlobs:
    """The compiled blobs OpenVINO keeps in ``folder`` (its ``CACHE_DIR``), bounded by size.

    Use: ``before = blobs.snapshot()``, compile, then ``blobs.used(key, before)`` with ``key``
    naming what was compiled (precision and input size): files that appeared belong to ``key``;
    otherwise the ones recorded for it were loaded. Either way they become the most recently
    used, and older blobs are removed until the folder fits :func:`compiled_cache_bytes`.
    """

    def __init__(self, folder: Path, max_bytes: int | None = None) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def snapshot(self) -> set[str]:
        return set(self._sizes())

    def used(self, key: str, before: set[str]) -> list[str]:
        """Record ``key``'s use (see the class); returns the files removed."""
        usage = self._usage()
        new = sorted(set(self._sizes()) - before)
        if new:
            usage[key] = new
        now = time.time()
        for name in usage.get(key, []):
            try:
                os.utime(self.folder / name, (now, now))
            except OSError:  # removed meanwhile by another process: it compiles again when needed
                pass
        removed = self._evict(keep=set(usage.get(key, [])))
        kept = {k: names for k, names in usage.items() if all((self.folder / n).is_file() for n in names)}
        atomic_write(self.folder / USAGE, lambda tmp: tmp.write_text(json.dumps(kept, indent=1, sort_keys=True) + "\n"))
        return removed

    def _sizes(self) -> dict[str, tuple[int, float]]:
        """``{file name: (bytes, last use)}`` of the blobs (not the usage record, not temporaries)."""
        found = {}
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return {}
        for entry in entries:
            if entry.name == USAGE or entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found[entry.name] = (stat.st_size, stat.st_mtime)
        return found

    def _usage(self) -> dict[str, list[str]]:
        try:
            usage = json.loads((self.folder / USAGE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(usage, dict):
            return {}
        return {str(k): [str(n) for n in v] for k, v in usage.items() if isinstance(v, list)}

    def _evict(self, keep: set[str]) -> list[str]:
        if not self.max_bytes:
            return []
        sizes = self._sizes()
        total = sum(size for size, _ in sizes.values())
        removed = []
        for name, (size, _) in sorted(sizes.items(), key=lambda item: item[1][1]):  # oldest use first
            if total <= self.max_bytes:
                break
            if name in keep:
                continue
            try:
                (self.folder / name).unlink()
            except OSError:
                continue
            total -= size
            removed.append(name)
        return removed
