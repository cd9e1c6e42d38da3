"""Writing output files safely: complete or not at all, never over a file the command did not write.

* :func:`atomic_write` writes into a temporary file beside the target and renames it over the
  target, so a crash never leaves a half-written checkpoint, image or JSON. The file gets the
  mode a plain ``open(path, "w")`` would create it with (``0o666 & ~umask``), not ``mkstemp``'s
  0600. The temporary file is named ``.<name>.atrous-tmp-<host>-<pid>-<random><suffix>``; one
  left behind by a killed process (SIGKILL, out of memory, power loss) is removed the next time
  atrous writes into that folder, once its writer (same host, that pid) is no longer running.
* :func:`atomic_save` is :func:`atomic_write` for writers that serialise into a file object
  (``torch.save``, ``torch.jit.save``, ``torch.export.save``): they write into memory and Python
  writes the bytes, so a full disk is an ``OSError`` (``ENOSPC``) with no partial file, not a
  C++ abort (torch's zip writer aborts the process when a write fails).
* :func:`output_folder` creates a folder atrous writes into (``--output``, an engine cache,
  ``train.output_dir``), or says in one line why it cannot: a file in the way, no permission,
  a path that cannot hold folders (``/proc/…``).
* :func:`move_aside` is the one thing ``--overwrite`` does to a file that is in the way: it is
  moved into ``<folder>/replaced-<UTC time>/``, never deleted or replaced; other files in the
  folder are not touched. Commands that write into a folder (``fit``, ``quantize``, ``validate``,
  ``predict``, ``analyze``, ``check-data``) move an earlier run's outputs aside before they start
  (:func:`claim_outputs`); commands that write one file (``export``, ``convert``, ``benchmark``,
  ``evaluate-cityscapes``) move it aside once the new file is complete
  (:func:`atomic_write` with ``keep_replaced=True``), so a failed run leaves it where it was.
* :func:`check_output` is what every single-file ``--output`` goes through first: an output equal
  to one of the command's inputs is refused always, an existing file unless ``--overwrite``
  (:class:`~atrous.errors.OutputExistsError`, naming the file).
* :func:`sha256_of` and :func:`file_digests` are how atrous records what it wrote into a cache
  or an output folder it reads back later (engine entries, int8 models, converted weights), and
  :func:`changed_files` how it checks them before use: a file that differs from its recorded
  digest is rebuilt (caches) or refused (folders the user holds).
* :func:`json_text` is the one way atrous turns results into JSON: NaN (a class never seen) and
  infinities become ``null``, which strict JSON readers accept, and tensors and arrays lists.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from .errors import InputError, OutputExistsError

TEMPORARY_MARK = ".atrous-tmp-"
# .<name>.atrous-tmp-<host>-<pid>-<8 random characters of mkstemp><suffix>
TEMPORARY_NAME = re.compile(r"^\..+\.atrous-tmp-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[a-z0-9_]{8}")

_umask_lock = threading.Lock()
_cleaned_folders: set[Path] = set()


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = True, keep_replaced: bool = False
) -> Path:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path``.

    Args:
        path: the file to write; its folder is created if missing.
        write: writes the complete file at the path it is given (same folder and suffix as
            ``path``, so writers that look at the suffix keep working).
        overwrite: replace an existing ``path`` (checkpoints a run updates); with ``False`` an
            existing file is left alone and :class:`OutputExistsError` raised, decided at the
            moment of the rename (``os.link`` does not replace), so no file that appeared
            meanwhile is lost either.
        keep_replaced: with ``overwrite``, an existing ``path`` is moved aside
            (:func:`move_aside`) once the new file is complete, instead of replaced: what
            ``--overwrite`` does to a file the user holds.

    Returns:
        ``path``.
    """
    path = Path(path)
    output_folder(path.parent)
    remove_orphaned_temporaries(path.parent)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=temporary_prefix(path), suffix=path.suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        try:
            write(tmp)
        except OSError as err:  # name the file the user asked for, not the temporary one
            if err.filename in (None, str(tmp), tmp):
                err.filename = str(path)
            raise
        os.chmod(tmp, 0o666 & ~current_umask())
        if overwrite and keep_replaced:
            move_aside([path], path.parent)
            _rename_no_replace(tmp, path)
        elif overwrite:
            os.replace(tmp, path)
        else:
            _rename_no_replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_save(
    path: str | os.PathLike, save: Callable[[BinaryIO], None], *, overwrite: bool = True, keep_replaced: bool = False
) -> Path:
    """``save(buffer)`` into memory, then :func:`atomic_write` the bytes to ``path``; returns ``path``."""
    buffer = io.BytesIO()
    save(buffer)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()), overwrite=overwrite,
                        keep_replaced=keep_replaced)


def temporary_prefix(path: Path, pid: int | None = None) -> str:
    """``.<name>.atrous-tmp-<host>-<pid>-``: the start of :func:`atomic_write`'s temporary names."""
    return f".{path.name}{TEMPORARY_MARK}{_host()}-{os.getpid() if pid is None else pid}-"


def _rename_no_replace(tmp: Path, path: Path) -> None:
    """Move ``tmp`` to ``path`` unless ``path`` exists (hard link + unlink: atomic and exclusive)."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputExistsError(f"{path} already exists; {OVERWRITE_HINT}, or choose another output") from None
    except OSError as err:  # file systems without hard links (FAT, some network shares)
        if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK, errno.ENOSYS):
            raise
        if path.exists():
            raise OutputExistsError(f"{path} already exists; {OVERWRITE_HINT}, or choose another output") from None
        os.replace(tmp, path)


def current_umask() -> int:
    """The process's umask (Linux: read from /proc, elsewhere set and restored under a lock)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _host() -> str:
    """This machine's name reduced to letters and digits (temporary names must parse back)."""
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:32] or "host"


def pid_running(pid: int) -> bool:
    """Whether process ``pid`` runs on this host (a pid atrous could not have written: assumed so)."""
    if pid <= 0:
        return True  # not a pid we could have written: leave the file alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def remove_orphaned_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of :func:`atomic_write` (and folders named the same way) in
    ``folder`` whose writer, on this host, is no longer running (once per folder and process). Returns the files removed."""
    folder = Path(folder)
    key = folder.resolve()
    if key in _cleaned_folders:
        return []
    _cleaned_folders.add(key)
    removed, host = [], _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        if TEMPORARY_MARK not in entry.name:
            continue
        match = TEMPORARY_NAME.match(entry.name)
        if match is None or match["host"] != host or pid_running(int(match["pid"])):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):  # a folder being written (atrous quantize)
                shutil.rmtree(entry.path)
            elif entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same file: equal after resolving symlinks and ``..``, or hard
    links of one file."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# What creating a folder the user named fails with when the path is wrong for it (a full disk is
# not among them: the command line reports that as it is).
_UNUSABLE_FOLDER_ERRNOS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS})


def output_folder(path: str | os.PathLike, option: str = "output folder", *, create: bool = True) -> Path:
    """Create ``path`` (and its parents) unless it is a folder already; returns it. With
    ``create=False`` only what can be told without creating anything is checked (a file in the way).

    Raises:
        OutputExistsError: ``path`` or one of its parents is a file.
        InputError: the folder cannot be created there (no permission, read-only file system, a
            path under ``/proc``); the message names ``option`` and the path.
    """
    path = Path(path)
    if path.is_dir():
        return path
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise OutputExistsError(f"{option} {path}: {blocker} is a file, not a folder; choose another {option}")
    if not create:
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        if err.errno not in _UNUSABLE_FOLDER_ERRNOS:
            raise
        raise InputError(f"{option} {path}: cannot create it ({err.strerror}); choose a folder you can write to") from err
    return path


REPLACED_PREFIX = "replaced-"
OVERWRITE_HINT = "pass --overwrite to move it aside into replaced-<time>/"


def move_aside(paths: Iterable[str | os.PathLike], folder: str | os.PathLike) -> Path | None:
    """Move ``paths`` (files or folders inside ``folder``) into a new ``folder/replaced-<UTC
    time>[.N]/``, keeping their names; returns that folder (``None`` when none of them exists)."""
    folder = Path(folder)
    present = [Path(p) for p in paths if Path(p).exists() or Path(p).is_symlink()]
    if not present:
        return None
    base = folder / time.strftime(f"{REPLACED_PREFIX}%Y%m%d-%H%M%S", time.gmtime())
    aside, suffix = base, 1
    while True:
        try:
            aside.mkdir(parents=True)
            break
        except FileExistsError:
            aside = base.with_name(f"{base.name}.{suffix}")
            suffix += 1
    for path in present:
        target = aside / path.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    return aside


def claim_outputs(folder: str | os.PathLike, names: Iterable[str], *, overwrite: bool,
                  option: str = "--output") -> Path | None:
    """Before a command writes ``names`` into ``folder``: refuse if any exists, unless
    ``overwrite``, which moves them aside (:func:`move_aside`); returns where they went.

    Raises:
        OutputExistsError: naming the files that exist and what to do.
    """
    folder = Path(folder)
    existing = [folder / name for name in names if (folder / name).exists()]
    if not existing:
        return None
    if not overwrite:
        raise OutputExistsError(f"{option} {folder} already holds {', '.join(p.name for p in existing)}; pass "
                                "--overwrite to move them aside into a replaced-<time>/ folder, or choose another folder")
    return move_aside(existing, folder)


def check_output(
    path: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool = False,
    option: str = "--output",
) -> Path:
    """Refuse an output that is one of ``inputs`` (always) or an existing file (unless
    ``overwrite``), before any work is done. Returns ``path`` as a :class:`Path`.

    Raises:
        OutputExistsError: naming the file and what to do.
    """
    path = Path(path)
    for source in inputs:
        if source is not None and str(source) and same_file(path, source):
            raise OutputExistsError(f"{option} {path} is the input {source}; choose another output file")
    if path.is_dir():
        raise OutputExistsError(f"{option} {path} is a folder; give a file name inside it")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{option} {path} already exists; {OVERWRITE_HINT}, or choose another file")
    return path


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(folder: str | os.PathLike, names: Iterable[str] | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of ``names`` in ``folder`` (``None``: every file below it)."""
    folder = Path(folder)
    if names is None:
        names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    return {name: sha256_of(folder / name) for name in names}


def changed_files(folder: str | os.PathLike, digests: Mapping[str, str]) -> list[str]:
    """The files of ``digests`` (relative to ``folder``) that are missing or whose content no
    longer has the recorded sha256."""
    folder = Path(folder)
    return [name for name, digest in digests.items()
            if not (folder / name).is_file() or sha256_of(folder / name) != digest]


def json_ready(value: Any) -> Any:
    """``value`` as plain JSON data, recursively: NaN and ±inf → ``None`` (``null``); tensors,
    arrays and NumPy scalars → lists and numbers (their ``tolist()``); tuples → lists; paths →
    strings; mapping keys → strings."""
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # torch.Tensor, np.ndarray, np.generic
        return json_ready(value.tolist())
    return value


def json_text(data: Any) -> str:
    """``data`` as indented JSON with a final newline (:func:`json_ready` first)."""
    return json.dumps(json_ready(data), indent=2) + "\n"
