"""YAML experiment configs: loading, dotted command-line overrides and clear errors.

A config file is a mapping with a ``model`` section (the arguments of
:func:`atrous.models.build.build_model`) and, optionally, ``reference`` (the numbers the
paper reports for it, checked by the tests) and the training/data sections.

A config is named by a path on disk or by the name of a config shipped with atrous (package
data under ``atrous/configs/``): ``denseaspp_report/table1_model4`` or
``denseaspp_report/table1_model4.yaml`` resolve from any folder, inside the checkout or from an
installed wheel. A path that exists wins. A name from before a folder was renamed
(:data:`RENAMED_CONFIG_FOLDERS`) fails with the new name.

``base: other.yaml`` starts from another config (a path relative to the file, else a packaged
name, so a user's own config may ``base: denseaspp_report/table1_model4``): mappings merge key
by key, anything else replaces — except that a component mapping whose ``name`` differs from the
base's (another head, dataset or optimizer) replaces the base's mapping as a whole.

``null`` removes an inherited key — in a file that uses ``base:`` and in a ``key.path=null``
override — so that the key's default applies (JSON Merge Patch, RFC 7396): a folder dataset
``base:``-ing the demo drops the synthetic data's ``length`` with ``length: null``. The keys of
:data:`NULL_IS_A_VALUE`, where null means something of its own (no bottleneck, no epoch limit),
are set to null instead.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, MutableSequence, Sequence
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

__all__ = [
    "CONFIG_ROOT", "ConfigError", "ReadOnlyDict", "check_arguments", "check_fields", "check_keys", "check_mapping",
    "check_value", "config_name", "did_you_mean", "freeze", "suggestions", "list_configs", "load_config",
    "resolve_config", "thaw",
]

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"  # package data: ships in the wheel
# Packaged config folders that were renamed, old → new: ``seed/`` named the DenseASPP
# implementation report, which "seed" (the random seed, ``train.seed``) did not say.
RENAMED_CONFIG_FOLDERS = {"seed": "denseaspp_report"}
TOP_LEVEL_KEYS = ("base", "model", "reference", "data", "train", "evaluate")
# Keys whose null is a value of its own, not "the default": `null` sets them instead of removing
# them. DenseASPP's `bottleneck_channels: null` is the report's layer without a 1×1 bottleneck
# (default 256); `max_epochs: null` is no epoch limit (default 60).
NULL_IS_A_VALUE = frozenset({"model.head.bottleneck_channels", "train.max_epochs"})


def load_config(path: str | Path, overrides: Iterable[str] = (), *, _chain: set[Path] | None = None) -> dict[str, Any]:
    """Read a YAML config and apply ``key.path=value`` overrides (values parsed as YAML)."""
    path = resolve_config(path)
    cfg = _read_yaml(path)
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config must be a mapping with a 'model' section")
    check_top_level(cfg, f"{path}: ")
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


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; a file that is not UTF-8 text, not YAML, or nested deeper
    than the parser's recursion allows is a :class:`ConfigError` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.object[err.start:err.start + 1]!r}); "
                          "save the config as UTF-8") from err
    try:
        return parse_yaml(text, str(path))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; a document nested deeper than the parser's recursion allows is a
    :class:`ConfigError` naming ``where`` (PyYAML recurses once per level)."""
    try:
        return yaml.safe_load(text)
    except RecursionError as err:
        raise ConfigError(f"{where}: nested too deeply to be a config (lists or mappings inside each other "
                          "hundreds of levels down)") from err


def merge_configs(base: Mapping[str, Any], override: Mapping[str, Any], _at: str = "") -> dict[str, Any]:
    """Deep-merge ``override`` into ``base`` (see the module docstring for the rule; a null
    value removes the key unless :data:`NULL_IS_A_VALUE` names it)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if value is None and f"{_at}{key}" not in NULL_IS_A_VALUE:
            out.pop(key, None)
            continue
        old = out.get(key)
        same_component = not (isinstance(value, Mapping) and "name" in value) or (
            isinstance(old, Mapping) and old.get("name") == value.get("name")
        )
        if isinstance(old, Mapping) and isinstance(value, Mapping) and same_component:
            out[key] = merge_configs(old, value, f"{_at}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with ``a.b.c=value`` items set (``value`` parsed as YAML);
    ``a.b.c=null`` removes the key (nothing to remove is no error), except for the keys of
    :data:`NULL_IS_A_VALUE`, which it sets to null.

    An override cannot add a section atrous does not know (``trian.max_epochs=1`` is an error,
    not a silent no-op) nor turn a section into a scalar (``model=3``). The sections' own keys
    and values are checked by their owners (``check_config`` in the CLI).
    """
    out = copy.deepcopy(dict(cfg))
    touched: set[str] = set()
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or "" in key.split("."):
            raise ConfigError(f"override {item!r} must look like key.path=value, e.g. model.num_classes=19")
        node: dict[str, Any] = out
        parts = key.split(".")
        touched.add(parts[0])
        if parts[0] not in TOP_LEVEL_KEYS or parts[0] == "base":
            raise ConfigError(
                f"override {item!r}: unknown section {parts[0]!r}{did_you_mean(parts[0], TOP_LEVEL_KEYS)}; "
                f"sections: {[k for k in TOP_LEVEL_KEYS if k != 'base']}"
            )
        try:
            value = parse_yaml(raw, f"override {key}")
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({getattr(err, 'problem', None) or err})") from err
        remove = value is None and key not in NULL_IS_A_VALUE
        for part in parts[:-1]:
            if remove and not isinstance(node.get(part), dict):
                break  # nothing there to remove
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        else:
            if remove:
                node.pop(parts[-1], None)
            else:
                node[parts[-1]] = value
    for section in touched:  # e.g. `--set model=3`
        if out.get(section) is not None:
            check_mapping(section, out[section], f"override {section}=…: ")
    return out


def check_top_level(cfg: Mapping[str, Any], where: str = "") -> None:
    """Unknown top-level keys, and sections that are not mappings, are errors."""
    unknown = sorted(set(cfg) - set(TOP_LEVEL_KEYS))
    if unknown and len(unknown) == len(cfg) and not suggestions(unknown, TOP_LEVEL_KEYS):
        # Nothing in it is a config key: name no key, so a mistaken file's content is never echoed.
        raise ConfigError(
            f"{where}not an atrous config: none of its {len(cfg)} top-level key(s) is one of {list(TOP_LEVEL_KEYS)}; "
            "start from a shipped config (`atrous zoo`)"
        )
    if unknown:
        raise ConfigError(
            f"{where}unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)}{suggestions(unknown, TOP_LEVEL_KEYS)}"
        )
    for key in ("model", "data", "train", "evaluate", "reference"):
        if cfg.get(key) is not None:
            check_mapping(key, cfg[key], where)


def did_you_mean(word: object, choices: Iterable[object]) -> str:
    """`` (did you mean 'train'?)`` for the closest of ``choices`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def suggestions(unknown: Iterable[object], choices: Iterable[object]) -> str:
    """`` (did you mean 'train' for 'trian'?)`` for each unknown word with a close choice, else ``""``."""
    choices = [str(c) for c in choices]
    pairs = []
    for word in unknown:
        close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
        if close:
            pairs.append(f"{close[0]!r} for {str(word)!r}")
    return f" (did you mean {', '.join(pairs)}?)" if pairs else ""


def check_mapping(section: str, value: object, where: str = "") -> None:
    """A config section must be a mapping of keys to values."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{where}{section}: expected a mapping (key: value lines), got {value!r} ({type(value).__name__})"
        )


def check_keys(section: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Every key of ``section`` must be one of ``allowed``; the error suggests the closest."""
    allowed = list(allowed)
    unknown = sorted(set(given) - set(allowed), key=str)
    if unknown:
        raise ConfigError(f"{section}: unknown key(s) {unknown}; valid keys: {allowed}{suggestions(unknown, allowed)}")


def resolve_config(
    ref: str | Path, *, relative_to: Path | None = None, referrer: Path | None = None
) -> Path:
    """The file a config reference names: an existing path (relative to ``relative_to`` if
    given, else to the working directory), else a config shipped with atrous by its name
    (``denseaspp_report/table1_model4``, ``.yaml`` optional)."""
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
        f"{where} {ref!r} is neither a file ({path}) nor the name of a config shipped with atrous"
        f"{_renamed_hint(name)}; `atrous zoo` lists the shipped names (e.g. denseaspp_report/table1_model4)"
    )


def _renamed_hint(name: str) -> str:
    """`` (did you mean 'denseaspp_report/table1_model4'? …)`` for ``seed/table1_model4``: a
    name under a renamed folder whose new name is shipped; else ``""``."""
    folder, _, rest = name.partition("/")
    renamed = RENAMED_CONFIG_FOLDERS.get(folder)
    if renamed is None or not (CONFIG_ROOT / renamed / f"{rest}.yaml").is_file():
        return ""
    return f" (did you mean '{renamed}/{rest}'? {folder}/ was renamed {renamed}/)"


def config_name(path: Path) -> str:
    """``…/atrous/configs/denseaspp_report/table1_model4.yaml`` → ``denseaspp_report/table1_model4``
    (else the path)."""
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


# -- read-only values ---------------------------------------------------------------------------

class ReadOnlyDict(Mapping[str, Any]):
    """A mapping that cannot be changed: the options a spec holds (:func:`freeze` builds it).
    Hashable when its values are; pickles and copies like a dict."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = ()) -> None:
        object.__setattr__(self, "_items", dict(items))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __hash__(self) -> int:
        return hash(tuple(self._items.items()))

    def __repr__(self) -> str:
        return repr(self._items)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self._items,)


def freeze(value: Any) -> Any:
    """``value`` read from YAML, read-only all the way down: mappings become :class:`ReadOnlyDict`,
    lists tuples; scalars are returned as they are."""
    if isinstance(value, Mapping):
        return ReadOnlyDict((key, freeze(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return tuple(freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The plain dicts and lists a frozen value came from (a fresh copy): what
    constructors, YAML, JSON and checkpoints take."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(item) for item in value]
    return value


# -- typed sections -----------------------------------------------------------------------------

_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string", type(None): "null"}


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    return origin in (list, tuple, Sequence, MutableSequence)


def _describe(annotation: Any) -> str:
    """``int | None`` → ``an integer or null``; ``dict[str, Any]`` → ``a mapping``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(annotation))
    if origin is dict or annotation is dict or origin is Mapping:
        return "a mapping"
    if _is_sequence(annotation):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if args and all(a == args[0] for a in args) and args[0] is not Any:
            return f"a list of {_describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
        return "a list"
    if annotation is Path or annotation is os.PathLike:
        return "a path"
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _matches(value: Any, annotation: Any) -> bool:
    """Whether ``value`` (read from YAML) fits ``annotation``; annotations this does not
    understand (callables, type variables, classes YAML cannot produce) accept anything."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(annotation))
    if origin is dict or annotation is dict or origin is Mapping:
        return isinstance(value, Mapping)
    if _is_sequence(annotation):
        if not isinstance(value, (list, tuple)):
            return False
        args = typing.get_args(annotation)
        if not args:
            return True
        if origin is tuple and Ellipsis not in args:
            return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
        return all(_matches(v, args[0]) for v in value)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:  # YAML's true/false are not counts
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:  # 1 is a fine learning-rate multiplier, true is not; .inf and .nan are no values
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is str:
        return isinstance(value, str)
    if annotation is Path or annotation is os.PathLike:
        return isinstance(value, (str, os.PathLike))
    return True


def check_value(key: str, value: Any, annotation: Any) -> None:
    """``value`` must be of the type ``annotation`` names (``int``, ``float``, ``bool``, ``str``,
    unions, ``Optional``, ``dict[...]``); the error names the key, the value and the type."""
    if not _matches(value, annotation):
        hint = ""
        if isinstance(value, str) and _looks_numeric(value):
            hint = f" (YAML reads {value} as a string: write {_yaml_float(value)})"
        elif isinstance(value, float) and not math.isfinite(value):
            hint = " (infinities and NaN are not values: write a finite number)"
        raise ConfigError(f"{key}: expected {_describe(annotation)}, got {value!r} ({type(value).__name__}){hint}")


def _yaml_float(text: str) -> str:
    """``3e-4`` → ``3.0e-4``, ``1e5`` → ``1.0e+5``: the spelling YAML 1.1 (PyYAML) reads as a float."""
    mantissa, _, exponent = text.strip().lower().partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return f"{mantissa}e{exponent}" if exponent else mantissa


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_arguments(section: str, target: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """Each of ``kwargs`` must fit the annotation of ``target``'s parameter of that name (a class:
    its ``__init__``); parameters without a usable annotation are not checked here."""
    function = target.__init__ if inspect.isclass(target) else target
    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError):  # annotations that need names only a type checker sees
        return
    for name, value in kwargs.items():
        if name in hints:
            check_value(f"{section}.{name}", value, hints[name])


def check_fields(section: str, cls: type, cfg: Mapping[str, Any]) -> None:
    """Check a config section against a dataclass: known keys (with a "did you mean"), and each
    value's type from the field's annotation. Ranges are the section's own business."""
    check_mapping(section, cfg)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    check_keys(section, cfg, names)
    for name, value in cfg.items():
        check_value(f"{section}.{name}", value, hints[name])
