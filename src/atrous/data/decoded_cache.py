"""Decoded images and label maps kept on disk as raw arrays, read back with memory mapping.

Decoding a 1024×2048 PNG costs a DataLoader worker more than everything else a training sample
needs (docs/data_pipeline.md); reading the decoded array back from a ``.npy`` file costs about a
millisecond. With ``data.dataset.cache_dir`` set, every dataset keeps each file it decodes once
in that folder:

* an entry is the array the decoder returned (uint8 ``(H, W, 3)`` for an RGB image, the stored
  values ``(H, W)`` for a label map), saved by ``np.save`` and read by ``np.load`` with
  ``mmap_mode="c"``: only the pages a crop touches are read, and the array is writable
  (copy-on-write: nothing written to it reaches the file);
* an entry is named after the source file's absolute path, size and modification time (and how
  it was decoded), so a changed source is decoded again and its old entry removed;
* entries are written to a temporary file in the same folder and renamed into place: a worker
  killed mid-write leaves at most a stray ``.tmp`` file, never a partial entry, and several
  workers writing the same entry at once each rename a complete one. An entry that cannot be
  read (a truncated or foreign file) is decoded again and rewritten;
* a write that fails (a full disk, a read-only folder) turns writing off for the rest of the
  process with one warning; training goes on decoding what is not cached.

The cache costs the decoded size on disk: 6 MB per 1024×2048 RGB frame and 2 MB per label map,
about 24 GB for Cityscapes' 2975 training pairs; delete the folder to reclaim it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import ConfigError

# What np.load raises on a file that is not a complete .npy array.
_UNREADABLE = (OSError, ValueError, EOFError)


class DecodedCache:
    """A folder of decoded arrays (module docstring).

    Args:
        folder: where entries go; created if missing (one sub-folder per leading hex digit pair
            of the source path's digest keeps folders small).
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"data.dataset.cache_dir: cannot create {self.folder} ({err.strerror or err}); "
                              "choose a folder you can write to, or remove the key to decode without a cache") from err
        self.writable = True

    def entry(self, source: Path, kind: str) -> Path | None:
        """The entry for ``source`` decoded as ``kind``; ``None`` when ``source`` cannot be
        stat'ed (the decoder then raises the error that names it)."""
        try:
            stat = os.stat(source)
        except OSError:
            return None
        name = _digest(f"{kind}\0{os.path.abspath(source)}")
        version = _digest(f"{stat.st_size}\0{stat.st_mtime_ns}")[:16]
        return self.folder / name[:2] / f"{name}-{version}.npy"

    def load(self, entry: Path) -> np.ndarray | None:
        """The cached array (memory-mapped, copy-on-write), or ``None`` if absent or unreadable."""
        try:
            return np.load(entry, mmap_mode="c", allow_pickle=False)
        except _UNREADABLE:
            return None

    def store(self, entry: Path, array: np.ndarray) -> None:
        """Write ``array`` as ``entry`` atomically and remove older entries of the same source;
        never raises: a failed write warns once and stops writing in this process."""
        if not self.writable:
            return
        temporary = None
        try:
            entry.parent.mkdir(exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=entry.parent, prefix=f".{entry.stem}.", suffix=".tmp")
            with os.fdopen(handle, "wb") as file:
                np.save(file, np.ascontiguousarray(array), allow_pickle=False)
            os.replace(temporary, entry)
            temporary = None
            source = entry.name.split("-")[0]
            for old in entry.parent.glob(f"{source}-*.npy"):
                if old != entry:
                    old.unlink(missing_ok=True)
        except OSError as err:
            self.writable = False
            warnings.warn(f"data.dataset.cache_dir: cannot write to {self.folder} ({err.strerror or err}); "
                          "decoding without caching from here on", RuntimeWarning, stacklevel=2)
        finally:
            if temporary is not None:
                Path(temporary).unlink(missing_ok=True)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()
