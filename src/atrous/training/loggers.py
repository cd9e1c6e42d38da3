"""The run's loggers (``train.loggers``), and a CSV logger whose ``metrics.csv`` a resumed run continues.

``train.loggers`` lists Lightning loggers by name, each a string or a mapping ``{name: ..., key:
value}`` whose other keys go to the logger's constructor (:data:`LOGGERS`: one record per kind)::

    train:
      loggers: [tensorboard, csv, mlflow]                      # the default is [tensorboard, csv]
      loggers: [csv, {name: wandb, project: streets}]          # W&B, offline unless offline: false

MLflow and Weights & Biases are optional extras (``pip install "atrous[mlflow]"`` /
``"atrous[wandb]"``); a config naming one that is not installed is one clear error.

Lightning's ``CSVLogger`` deletes an existing ``metrics.csv`` when its folder is reused, so a
resumed run would lose its history. :class:`ResumableCSVLogger` is a logger of its own on
Lightning's public ``Logger`` base class (the documented way to write one: ``name``,
``version``, ``log_metrics``, ``log_hyperparams``, ``save``, ``finalize``, rank zero only), so it
relies on nothing private of Lightning's ``CSVLogger``. It writes through
:class:`AppendingCSVWriter`, which appends to the file and, when new columns appear, rewrites it
with the wider header, as Lightning does; ``hparams.yaml`` next to it, as Lightning writes it.

On resume, :func:`truncate_metrics` first drops the rows the interrupted attempt logged after
its checkpoint (``step >= global_step``), which the resumed run logs again.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import inspect
import os
from argparse import Namespace
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from torch import Tensor

from ..config import ConfigError, check_keys, check_mapping, did_you_mean, thaw
from ..errors import install_hint
from ..io import atomic_write

METRICS_FILE = "metrics.csv"


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def _write(path: Path, keys: list[str], rows: list[dict[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def truncate_metrics(path: str | Path, global_step: int) -> int:
    """Keep the rows of ``metrics.csv`` logged before the checkpoint at ``global_step``;
    returns the number of rows dropped (0 when the file does not exist).

    A checkpoint written after step ``S`` (``global_step == S``) has seen every row with
    ``step < S``, including its epoch's closing rows (Lightning logs them at step ``S - 1``);
    rows with ``step >= S`` come from the attempt that died and are logged again on resume.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    keys, rows = _read(path)
    kept = [row for row in rows if row.get("step") not in (None, "") and int(row["step"]) < global_step]
    if len(kept) != len(rows):
        _write(path, keys, kept)
    return len(rows) - len(kept)


class AppendingCSVWriter:
    """The experiment behind :class:`ResumableCSVLogger`: ``log_metrics`` buffers rows,
    ``save`` appends them to ``<log_dir>/metrics.csv`` (keeping what the file holds)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.metrics_file_path = str(Path(log_dir) / METRICS_FILE)
        self.metrics: list[dict[str, Any]] = []
        self.hparams: dict[str, Any] = {}
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.metrics_keys = sorted(_read(Path(self.metrics_file_path))[0]) if Path(self.metrics_file_path).is_file() else []

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        row = {k: v.item() if isinstance(v, Tensor) else v for k, v in metrics_dict.items()}
        row["step"] = len(self.metrics) if step is None else step
        self.metrics.append(row)

    def log_hparams(self, params: dict[str, Any]) -> None:
        self.hparams.update(params)
        save_hparams_to_yaml(str(Path(self.log_dir) / "hparams.yaml"), self.hparams)

    def save(self) -> None:
        if not self.metrics:
            return
        path = Path(self.metrics_file_path)
        new_keys = set().union(*self.metrics) - set(self.metrics_keys)
        self.metrics_keys = sorted(set(self.metrics_keys) | new_keys)
        if not path.is_file() or new_keys:
            old_rows = _read(path)[1] if path.is_file() else []
            _write(path, self.metrics_keys, old_rows + self.metrics)
        else:
            with open(path, "a", newline="") as file:
                csv.DictWriter(file, fieldnames=self.metrics_keys).writerows(self.metrics)
        self.metrics = []


class ResumableCSVLogger(Logger):
    """Metrics to ``<save_dir>/<name>/metrics.csv`` (continued, not replaced, when the folder holds
    one) and hyperparameters to ``hparams.yaml`` beside it; written every
    ``flush_logs_every_n_steps`` steps and at the end, as Lightning's ``CSVLogger`` does.

    ``version`` is the run folder's sub-folder below ``name`` (``""``: none, atrous' layout).
    """

    def __init__(self, save_dir: str | os.PathLike, name: str = "csv", version: str = "",
                 flush_logs_every_n_steps: int = 100) -> None:
        super().__init__()
        self._save_dir = os.fspath(save_dir)
        self._name, self._version = name, version
        self._flush_every = flush_logs_every_n_steps
        self._writer: AppendingCSVWriter | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def version(self) -> str:
        return self._version

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def log_dir(self) -> str:
        """The folder of ``metrics.csv``: ``<save_dir>/<name>[/<version>]``."""
        return str(Path(self._save_dir, self._name, self._version))

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingCSVWriter:
        if self._writer is None:
            self._writer = AppendingCSVWriter(log_dir=self.log_dir)
        return self._writer

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace | None = None, *args: Any, **kwargs: Any) -> None:
        params = vars(params) if isinstance(params, Namespace) else dict(params or {})
        self.experiment.log_hparams(params)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        if step is None:
            step = len(self.experiment.metrics)
        self.experiment.log_metrics(dict(metrics), step)
        if (step + 1) % self._flush_every == 0:
            self.save()

    @rank_zero_only
    def save(self) -> None:
        super().save()
        self.experiment.save()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._writer is not None:  # a process that never logged has nothing to write
            self.save()


# -- train.loggers ---------------------------------------------------------------------------


def _tensorboard(out: Path, options: dict[str, Any]) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(**{"save_dir": str(out), "name": "tb", "version": "", **options})


def _csv(out: Path, options: dict[str, Any]) -> Logger:
    return ResumableCSVLogger(**{"save_dir": str(out), "name": "csv", "version": "", **options})


def _mlflow(out: Path, options: dict[str, Any]) -> Logger:
    from lightning.pytorch.loggers import MLFlowLogger

    options = {"experiment_name": "atrous", "run_name": out.name, "tracking_uri": (out / "mlruns").resolve().as_uri(),
               **options}
    if str(options["tracking_uri"]).startswith("file:"):
        # MLflow 3 keeps its file store "in maintenance mode" and refuses it unless this opt-out is
        # set; a local folder of runs is what train.loggers' mlflow promises (a database URI, e.g.
        # sqlite:///mlflow.db, needs the full mlflow package).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(**options)


def _wandb(out: Path, options: dict[str, Any]) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    return WandbLogger(**{"save_dir": str(out), "project": "atrous", "name": out.name, "offline": True, **options})


@dataclass(frozen=True)
class LoggerKind:
    """One kind of ``train.loggers`` entry: its builder ``(output_dir, options) → Logger``, the
    module it needs and the extra that installs it."""

    build: Callable[[Path, dict[str, Any]], Logger]
    logger: str  # the Lightning logger class the options are keywords of, "module:Class"
    module: str | None = None
    extra: str | None = None

    def logger_class(self) -> type[Logger]:
        module, _, name = self.logger.partition(":")
        return getattr(importlib.import_module(module), name)


LOGGERS: dict[str, LoggerKind] = {
    # <output_dir>/tb/
    "tensorboard": LoggerKind(_tensorboard, "lightning.pytorch.loggers:TensorBoardLogger"),
    # <output_dir>/csv/metrics.csv (read by training_curves.png)
    "csv": LoggerKind(_csv, f"{__name__}:ResumableCSVLogger"),
    # <output_dir>/mlruns/ (a local file store)
    "mlflow": LoggerKind(_mlflow, "lightning.pytorch.loggers:MLFlowLogger", "mlflow", "mlflow"),
    # <output_dir>/wandb/ (offline: `wandb sync` uploads it)
    "wandb": LoggerKind(_wandb, "lightning.pytorch.loggers:WandbLogger", "wandb", "wandb"),
}
DEFAULT_LOGGERS = ("tensorboard", "csv")


def _entries(cfg: Any) -> list[tuple[str, dict[str, Any]]]:
    """``train.loggers`` as ``(name, options)`` pairs; :class:`ConfigError` for a bad entry."""
    if not isinstance(cfg, (list, tuple)):
        raise ConfigError(f"train.loggers: a list of logger names {list(LOGGERS)} (or {{name: ..., options}}), got {cfg!r}")
    entries = []
    for item in cfg:
        if isinstance(item, str):
            name, options = item, {}
        else:
            check_mapping("train.loggers[]", item)
            options = dict(item)
            name = options.pop("name", None)
        if name not in LOGGERS:
            raise ConfigError(f"train.loggers: unknown logger {name!r}{did_you_mean(str(name), LOGGERS)}; "
                              f"loggers: {list(LOGGERS)}")
        entries.append((name, options))
    return entries


def check_loggers(cfg: Any) -> None:
    """Validate ``train.loggers``: names, that the optional packages are installed, and each
    entry's options against its logger's keyword arguments (a logger that takes ``**kwargs``
    judges its own)."""
    for name, options in _entries(cfg):
        kind = LOGGERS[name]
        if kind.module is not None and importlib.util.find_spec(kind.module) is None:
            raise ConfigError(f"train.loggers: {name} needs the {kind.module} package: "
                              f"{install_hint(kind.extra)} (or remove {name} from train.loggers)")
        if options:
            params = inspect.signature(kind.logger_class()).parameters
            if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
                check_keys(f"train.loggers: {name}", options, list(params))


def build_loggers(cfg: Any, output_dir: str | Path) -> list[Logger]:
    """The Lightning loggers of ``train.loggers`` (checked by :func:`check_loggers` where the
    train section is parsed; see the module docstring) writing under ``output_dir``."""
    out = Path(output_dir)
    return [LOGGERS[name].build(out, thaw(options)) for name, options in _entries(cfg)]
