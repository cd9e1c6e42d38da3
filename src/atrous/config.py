"""YAML experiment configs: loading, dotted command-line overrides and clear errors.

A config file is a mapping with a ``model`` section (the arguments of
:func:`atrous.models.build.build_model`) and, optionally, ``reference`` (the numbers the
paper reports for it, checked by the tests) and the training/data sections.

A config is named by a path on disk or by the name of a config shipped with atrous (package
data under ``atrous/configs/``): ``seed/table1_model4`` or ``seed/table1_model4.yaml`` resolve
from any folder, inside the checkout or from an installed wheel. A path that exists wins.

``base: other.yaml`` starts from another config (a path relative to the file, else a packaged
name, so a user's own config may ``base: seed/table1_model4``): mappings merge key by key,
anything else replaces — except that a component mapping whose ``name`` differs from the
base's (another head, dataset or optimizer) replaces the base's mapping as a whole.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = ["CONFIG_ROOT", "ConfigError", "config_name", "list_configs", "load_config", "resolve_config"]

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"  # package data: ships in the wheel
TOP_LEVEL_KEYS = ("base", "model", "reference", "data", "train", "evaluate")


def load_config(path: str | Path, overrides: Iterable[str] = (), *, _chain: set[Path] | None = None) -> dict[str, Any]:
    """Read a YAML config and apply ``key.path=value`` overrides (values parsed as YAML)."""
    path = resolve_config(path)
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
        base_path = resolve_config(str(cfg.pop("base")), relative_to=path.parent, referrer=path)
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


def resolve_config(
    ref: str | Path, *, relative_to: Path | None = None, referrer: Path | None = None
) -> Path:
    """The file a config reference names: an existing path (relative to ``relative_to`` if
    given, else to the working directory), else a config shipped with atrous by its name
    (``seed/table1_model4``, ``.yaml`` optional)."""
    ref = str(ref)
    path = (relative_to / ref) if relative_to is not None else Path(ref).expanduser()
    if path.is_file():
        return path
    name = ref.removesuffix(".yaml").removesuffix(".yml")
    packaged = CONFIG_ROOT / f"{name}.yaml"
    if not Path(name).is_absolute() and packaged.is_file():
        return packaged
    where = f"{referrer}: base config" if referrer is not None else "config"
    raise ConfigError(
        f"{where} {ref!r} is neither a file ({path}) nor the name of a config shipped with atrous; "
        "`atrous zoo` lists the shipped names (e.g. seed/table1_model4)"
    )


def config_name(path: Path) -> str:
    """``…/atrous/configs/seed/table1_model4.yaml`` → ``seed/table1_model4`` (else the path)."""
    try:
        return path.resolve().relative_to(CONFIG_ROOT).with_suffix("").as_posix()
    except ValueError:
        return str(path)


def list_configs(root: Path = CONFIG_ROOT) -> list[Path]:
    """Every config shipped with atrous, sorted. An installation without them is broken: say so."""
    found = sorted(root.rglob("*.yaml")) if root.is_dir() else []
    if not found:
        raise ConfigError(
            f"no configs found in {root}: this atrous installation lacks its package data; "
            "reinstall it (pip install --force-reinstall atrous) or install from a wheel built with `pip wheel .`"
        )
    return found
