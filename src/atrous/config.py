"""YAML experiment configs: loading, dotted command-line overrides and clear errors.

A config file is a mapping with a ``model`` section (the arguments of
:func:`atrous.models.build.build_model`) and, optionally, ``reference`` (the numbers the
paper reports for it, checked by the tests) and the training/data sections.

``base: other.yaml`` (relative to the file) starts from another config: mappings merge key by
key, anything else replaces — except that a component mapping whose ``name`` differs from the
base's (another head, dataset or optimizer) replaces the base's mapping as a whole.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"
TOP_LEVEL_KEYS = ("base", "model", "reference", "data", "train", "evaluate")


class ConfigError(ValueError):
    """A config file or value is wrong; the message says where and what to do."""


def load_config(path: str | Path, overrides: Iterable[str] = (), *, _chain: set[Path] | None = None) -> dict[str, Any]:
    """Read a YAML config and apply ``key.path=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        hint = f" Configs shipped with atrous live in {CONFIG_ROOT}." if CONFIG_ROOT.is_dir() else ""
        raise ConfigError(f"config file {path} does not exist.{hint}")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config must be a mapping with a 'model' section")
    unknown = sorted(set(cfg) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}")
    if "base" in cfg:
        base_path = path.parent / str(cfg.pop("base"))
        if _chain is not None and base_path.resolve() in _chain:
            raise ConfigError(f"{path}: 'base' chain loops back to {base_path}")
        chain = (_chain or set()) | {path.resolve()}
        own_reference = cfg.pop("reference", None)
        cfg = merge_configs(load_config(base_path, _chain=chain), cfg)
        # A derived config reproduces something else than its base: its reference (or none)
        # replaces the base's instead of merging with it.
        cfg.pop("reference", None)
        if own_reference is not None:
            cfg["reference"] = own_reference
    return apply_overrides(cfg, overrides)


def merge_configs(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (see the module docstring for the rule)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        old = out.get(key)
        same_component = not (isinstance(value, Mapping) and "name" in value) or (
            isinstance(old, Mapping) and old.get("name") == value.get("name")
        )
        if isinstance(old, Mapping) and isinstance(value, Mapping) and same_component:
            out[key] = merge_configs(old, value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``a.b.c=value`` items set (``value`` parsed as YAML)."""
    out = copy.deepcopy(dict(cfg))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key.path=value, e.g. model.num_classes=19")
        node: dict[str, Any] = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def list_configs(root: Path = CONFIG_ROOT) -> list[Path]:
    """Every config shipped in ``configs/``, sorted."""
    return sorted(root.rglob("*.yaml"))
