"""Module-level ``__getattr__`` for packages that keep heavy optional imports off their import path."""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict


def lazy_getattr(package: str, table: Dict[str, str], namespace: Dict[str, Any]) -> Callable[[str], Any]:
    """``__getattr__`` importing ``table[name]`` (relative to ``package``) on first access, then caching it."""
    def __getattr__(name: str) -> Any:
        if name in table:
            value = getattr(importlib.import_module(table[name], package), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    return __getattr__
