"""Names a package offers without importing them until first use (PEP 562), so that
``import atrous`` and the command line's help start without torch.

    __getattr__, __dir__ = lazy_attributes(__name__, {"build_model": ".models.build"})

``from package import name`` and ``package.name`` import the module on first use and keep the
value in the package's namespace (the next look-up is an ordinary attribute).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, table: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``table``: name → the
    module (relative to ``package``) that defines it."""

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(table[name], package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *table})

    return __getattr__, __dir__
