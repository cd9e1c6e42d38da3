"""The errors a user can fix, as one family.

Everything atrous raises for a mistake of the user's — a config value, a dataset layout, a
checkpoint of another model, missing weights, an unusable device, a full disk, an output that
would replace a file the command did not write — derives from :class:`UserError`. The command
line prints such an error as one line (``atrous: error: …``) and exits with status 2; any other
exception is a bug in atrous and keeps its traceback. Each class also derives from the built-in
exception it refines, so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations

import errno
import importlib
import re
from types import ModuleType


class UserError(Exception):
    """A mistake the user can fix; the message names the file or value and what to do."""


class ConfigError(UserError, ValueError):
    """A config file or value is wrong; the message says where and what to do."""


class InputError(UserError, ValueError):
    """A command-line argument or input file cannot be used as given."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, unreadable, or was saved from another model."""


class DeviceError(UserError, ValueError):
    """The requested device does not exist or is not available on this machine."""


class OutputExistsError(UserError, FileExistsError):
    """An output would replace a file that this command did not write (or one of its inputs)."""


class DiskFullError(UserError, OSError):
    """A write failed because the disk (or quota) is full."""


class MissingExtraError(UserError, ImportError):
    """An optional package that a command needs is not installed; the message names the
    ``pip install`` of the atrous extra that brings it."""


# -- optional packages ---------------------------------------------------------------------------

def install_hint(extra: str) -> str:
    """The command that installs an extra: ``pip install "atrous[video]"``."""
    return f'pip install "atrous[{extra}]"'


def require_extra(module: str, extra: str, needed_by: str) -> ModuleType:
    """Import ``module``, an optional dependency that the atrous extra ``extra`` brings, or raise
    :class:`MissingExtraError`: ``<needed_by> needs <package>: pip install "atrous[<extra>]"``.

    >>> require_extra("json", "none", "this example").__name__
    'json'
    """
    package = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = f" ({err.name} is missing)" if err.name and err.name.split(".")[0] != package else ""
        raise MissingExtraError(f"{needed_by} needs {package}{missing}: {install_hint(extra)}") from err


# -- reading errors at the command line's boundary ---------------------------------------------

# A full disk, a full quota, and a file over the size limit of its file system or of ``ulimit -f``.
_DISK_FULL_ERRNOS = frozenset(
    code for code in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG) if code is not None
)
_WORKER_PREFIX = re.compile(r"^Caught (?P<name>\w+) in DataLoader worker process \d+\.\s*Original Traceback")


def user_error_names() -> set[str]:
    """The class names of every :class:`UserError` subclass defined so far."""
    names, todo = set(), [UserError]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names


def worker_error_message(err: BaseException) -> str | None:
    """The original one-line message of a user error raised inside a DataLoader worker, or ``None``.

    torch re-raises an exception from a worker process in the main process with its traceback
    folded into the message (``Caught DatasetError in DataLoader worker process 0. Original
    Traceback (most recent call last): … DatasetError: <message>``), as the same class when it
    can construct it from one string, else as ``RuntimeError``
    (``torch.utils.data._utils.ExceptionWrapper.reraise``). Both forms are recognised by the
    class name, so a user error keeps its own one-line message.
    """
    text = str(err)
    match = _WORKER_PREFIX.match(text)
    if match is None or match["name"] not in user_error_names():
        return None
    # The traceback ends with "<module>.<Name>: <message>" (or "<Name>: <message>").
    found = list(re.finditer(rf"^(?:[\w.]+\.)?{match['name']}: (?P<message>.*)$", text, flags=re.MULTILINE))
    return found[-1]["message"].strip() if found else None


def disk_full_cause(err: BaseException) -> OSError | None:
    """The "no space left on device" (or quota) ``OSError`` behind ``err`` (itself, its cause or
    context), or ``None``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return current
        current = current.__cause__ or current.__context__
    return None


def disk_full_message(err: OSError) -> str:
    """One line for a failed write on a full disk, naming the file where the error knows it."""
    where = f" writing {err.filename}" if err.filename else ""
    if err.errno == errno.EFBIG:
        return (f"a file is over the size limit{where} ({err.strerror or 'file too large'}): write the outputs to "
                "another disk, or raise the limit (ulimit -f)")
    return (
        f"the disk is full{where} ({err.strerror or 'no space left on device'}): "
        "free some space or write the outputs to another disk"
    )


_CPU_ALLOCATOR_FAILURE = re.compile(r"DefaultCPUAllocator: can't allocate memory: you tried to allocate (?P<bytes>\d+) bytes")
_NUMPY_ALLOCATION = re.compile(r"Unable to allocate (?P<size>[\d.]+ \w+) for an array")


def out_of_memory_message(err: BaseException) -> str | None:
    """One line for a command that ran out of memory (a ``MemoryError``, torch's CPU allocator
    or ``torch.OutOfMemoryError`` on a GPU), naming the size it asked for where known; ``None``
    for anything else."""
    text = str(err)
    if isinstance(err, MemoryError):
        found = _NUMPY_ALLOCATION.search(text)
        size = found["size"] if found else None
    elif type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), without importing torch here
        size = None
    elif isinstance(err, RuntimeError) and (found := _CPU_ALLOCATOR_FAILURE.search(text)):
        size = f"{int(found['bytes']) / 2**30:.1f} GiB"
    else:
        return None
    asked = f" (it asked for {size})" if size else ""
    return (f"out of memory{asked}: use smaller images, crops, windows or batches, fewer --scales, "
            "or a machine with more memory")
