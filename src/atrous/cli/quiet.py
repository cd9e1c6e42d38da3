"""Quiet by default: what Lightning prints that an atrous user cannot act on is hidden, unless
``--verbose`` (``fit``, ``validate``, ``test``, ``compare``, ``demo``).

Hidden: Lightning's INFO lines (accelerators available, "💡 Tip" adverts for litlogger and
litmodels, "`Trainer(limit_*_batches=1.0)` was configured…", "`Trainer.fit` stopped…") and the
warnings of :data:`MOOT_WARNINGS`, each moot for a stated reason. Every other warning still shows.
Filters and levels are restored when the command ends (tests call :func:`atrous.cli.main` in-process).
Only the commands that run a Lightning Trainer (those with ``--verbose``) enter it: it imports Lightning.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# message pattern → why atrous makes it moot
MOOT_WARNINGS: dict[str, str] = {
    r".*sync_dist=True": "atrous sums its metrics' confusion matrices across processes itself "
                         "(torchmetrics), and logs the validation loss with sync_dist",
    r".*does not have many workers": "the workers are the config's data.num_workers, chosen per machine",
    r".*smaller than the logging interval": "the epoch's metrics are logged at its end whatever log_every_n_steps is",
    r".*could not find the monitored key": "a run that never validates ends with best.ckpt = its final weights",
    r".*isinstance\(treespec, LeafSpec\)": "Lightning's own use of a deprecated torch API",
}
LIGHTNING_LOGGERS = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric")


@contextmanager
def lightning_output(verbose: bool) -> Iterator[None]:
    """Inside the block, Lightning's INFO lines and :data:`MOOT_WARNINGS` are hidden unless ``verbose``."""
    if verbose:
        yield
        return
    import lightning.pytorch  # noqa: F401  (importing it sets its loggers' level: set ours after)

    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        for pattern in MOOT_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)
