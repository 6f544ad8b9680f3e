"""intake-bfa: the Binance USDT-M futures availability dataset, one line from a notebook.

>>> import intake_bfa
>>> cat = intake_bfa.open_catalog()
>>> df = cat.daily_availability.read(version="2026-11-20")

Importing this package is cheap: pandas, pyarrow and duckdb are imported only by
the functions that need them, and nothing touches the disk or network.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public names resolved on first use (PEP 562), keeping `import intake_bfa` light.
_LAZY = {
    "open_catalog": "intake_bfa.catalog",
    "browse": "intake_bfa.browser",
    "list_versions": "intake_bfa.resolve",
    "resolve_version": "intake_bfa.resolve",
    "local_path": "intake_bfa.datasets",
    "read": "intake_bfa.datasets",
    "diff": "intake_bfa.audit",
    "check": "intake_bfa.audit",
    "to_arrow": "intake_bfa.datasets",
    "to_duckdb": "intake_bfa.datasets",
    "connect": "intake_bfa.datasets",
    "DATASETS": "intake_bfa.schema",
    "get_settings": "intake_bfa.config",
    "errors": "intake_bfa.errors",
}

if TYPE_CHECKING:  # pragma: no cover
    from intake_bfa import errors
    from intake_bfa.audit import check, diff
    from intake_bfa.browser import browse
    from intake_bfa.catalog import open_catalog
    from intake_bfa.config import get_settings
    from intake_bfa.datasets import connect, local_path, read, to_arrow, to_duckdb
    from intake_bfa.resolve import list_versions, resolve_version
    from intake_bfa.schema import DATASETS

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'intake_bfa' has no attribute {name!r}")
    mod = import_module(module)
    # "errors" is a module of its own; every other name is an attribute of its module.
    value = mod if module == f"intake_bfa.{name}" and not hasattr(mod, name) else getattr(mod, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
