"""The errors a user can fix, as one family.

Everything atrous raises for a mistake of the user's — a config value, a dataset layout, a
checkpoint of another model, missing weights, an unusable device, a full disk, an output that
would replace a file the command did not write — derives from :class:`UserError`. The command
line prints such an error as one line (``atrous: error: …``) and exits with status 2; any other
exception is a bug in atrous and keeps its traceback. Each class also derives from the built-in
exception it refines, so ``except ValueError`` in user code keeps working.
"""

from __future__ import annotations


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
