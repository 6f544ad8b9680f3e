"""Optional dependencies: import one, or say exactly which extra installs it.

Every feature beyond reading pandas/Arrow/DuckDB needs an extra (``polars``, ``dask``,
``plot``, ``serve``, ``producer``...). :func:`require` imports what the feature needs and,
when it is missing, raises :class:`~intake_bfa.errors.MissingDependencyError` (an
``ImportError``) naming the package and the exact install command; the CLI prints it as one
line with exit status 1.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from intake_bfa.errors import MissingDependencyError


def require(*modules: str, extra: str, feature: str) -> list[ModuleType]:
    """Import ``modules`` (all needed by ``feature``) or raise naming the extra.

    Parameters
    ----------
    modules
        Module names, e.g. ``"polars"`` or ``"dask.dataframe"``.
    extra
        The intake-bfa extra that installs them (``pip install 'intake-bfa[extra]'``).
    feature
        What needs them, for the message (e.g. ``"to_polars()"``).

    Returns
    -------
    list of modules
        In the order given.

    Raises
    ------
    MissingDependencyError
        Naming the missing package(s) and ``pip install 'intake-bfa[<extra>]'``.
    """
    found, missing = [], []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            missing.append(name.split(".")[0])
    if missing:
        names = " and ".join(dict.fromkeys(missing))
        raise MissingDependencyError(
            f"{feature} needs {names}, which {'is' if len(set(missing)) == 1 else 'are'} not "
            f"installed; install it with pip install 'intake-bfa[{extra}]'",
            package=missing[0],
            extra=extra,
        )
    return found
