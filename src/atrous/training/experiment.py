"""One experiment config, parsed once into frozen specs: :class:`Experiment`.

Each section has its spec and its parser, owned by the floor that builds from it:

========== ============================================ ==========================================
section    spec                                         parsed by
========== ============================================ ==========================================
model      :class:`~atrous.models.spec.ModelSpec`       :meth:`ModelSpec.from_mapping`
data       :class:`~atrous.data.spec.DataSpec`          :meth:`DataSpec.from_mapping`
train      :class:`~.train_section.TrainConfig`         :meth:`TrainConfig.from_mapping`
evaluate   :class:`~atrous.evaluation.strategy.EvaluationStrategy` :func:`strategy_from_config`
========== ============================================ ==========================================

The command line loads a config once (:meth:`Experiment.load`), checks every section before the
command runs (:meth:`Experiment.validate`) and hands the experiment to the command; the builders
take the specs. A section is parsed on first use and kept: a packaged config as shipped is valid
(tests/test_errors.py parses each), so ``atrous info`` on one reads its declared figures without
parsing its sections, and without importing torch. This module imports no torch.

The plain mapping stays with the experiment for what stores a config (checkpoints, hparams):
:meth:`Experiment.mapping`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import (
    ConfigError,
    apply_overrides,
    config_name,
    freeze,
    load_config,
    resolve_config,
    thaw,
)

if TYPE_CHECKING:
    from ..data.spec import DataSpec
    from ..evaluation.strategy import EvaluationStrategy
    from ..models.spec import ModelSpec
    from .train_section import TrainConfig

T = TypeVar("T")


@dataclass(frozen=True)
class Experiment:
    """A config (overrides applied) and its sections' specs, each parsed once."""

    config: Mapping[str, Any]  # the whole config, read-only (:meth:`mapping` gives a plain copy)
    source: str | None = None  # the file or packaged name it was read from; errors name it

    @classmethod
    def load(cls, path: str | Path, overrides: Iterable[str] = ()) -> Experiment:
        """The experiment of a config file or packaged name, with ``key.path=value`` overrides."""
        return cls(freeze(load_config(path, overrides)), str(path))

    @classmethod
    def of(cls, config: Experiment | Mapping[str, Any]) -> Experiment:
        """``config`` as an experiment (an experiment is returned as it is)."""
        return config if isinstance(config, Experiment) else cls(freeze(config))

    def with_overrides(self, overrides: Iterable[str]) -> Experiment:
        """Another experiment: this config with ``key.path=value`` overrides (sections parsed anew)."""
        return Experiment(freeze(apply_overrides(self.mapping(), overrides)), self.source)

    def mapping(self) -> dict[str, Any]:
        """The config as plain dicts and lists, a fresh copy: what checkpoints store."""
        return thaw(self.config)

    def section(self, name: str) -> Mapping[str, Any] | None:
        """A section as the config gives it (read-only; ``None`` when absent)."""
        return self.config.get(name)

    def _parse(self, parse: Callable[[Any], T], section: Any) -> T:
        try:
            return parse(thaw(section))  # the values as YAML gives them: lists, dicts
        except ConfigError as err:
            raise ConfigError(f"{self.source}: {err}" if self.source else str(err)) from err

    @cached_property
    def model(self) -> ModelSpec:
        """The ``model`` section's spec (required)."""
        from ..models.spec import ModelSpec

        if "model" not in self.config:
            where = f"{self.source}: " if self.source else ""
            raise ConfigError(f"{where}the config has no 'model' section; start from a shipped one (`atrous zoo`)")
        return self._parse(ModelSpec.from_mapping, self.config["model"])

    @cached_property
    def data(self) -> DataSpec:
        """The ``data`` section's spec (absent: the built-in synthetic streets)."""
        from ..data.spec import DataSpec

        return self._parse(DataSpec.from_mapping, self.section("data"))

    @cached_property
    def train(self) -> TrainConfig:
        """The ``train`` section's spec (absent: the defaults)."""
        from .train_section import TrainConfig

        return self._parse(TrainConfig.from_mapping, self.section("train"))

    @cached_property
    def evaluate(self) -> EvaluationStrategy:
        """The test-time strategy of the ``evaluate`` section (absent: one forward pass).
        Command-line options go on top of the section itself (:func:`~atrous.evaluation.strategy.strategy_from_options`)."""
        from ..evaluation.strategy import strategy_from_config

        return self._parse(strategy_from_config, self.section("evaluate"))

    @property
    def reference(self) -> Mapping[str, Any]:
        """What the config reproduces (``source``, the paper's figures); empty when it says nothing."""
        return self.section("reference") or {}

    @property
    def name(self) -> str:
        """What reports call the experiment: a packaged config's name
        (``cityscapes/denseaspp121``), else the file it was read from (``"config"`` for one built
        from a mapping)."""
        return config_name(resolve_config(self.source)) if self.source else "config"

    @property
    def output_dir(self) -> Path:
        """The run folder, ``train.output_dir``."""
        return Path(self.train.output_dir)

    def validate(self) -> Experiment:
        """Parse every section now (model, data, train, evaluate): the first mistake is a
        :class:`ConfigError` naming the file, the key and the value. Returns the experiment."""
        for name in ("model", "data", "train", "evaluate"):
            getattr(self, name)
        return self
