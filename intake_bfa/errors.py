"""The whole error family of intake-bfa.

Every error derives from :class:`BfaError` *and* from the builtin exception that
callers already catch (an integrity failure is a ``ValueError``, data missing
while offline is a ``FileNotFoundError``...). Each carries the data needed to act
on it (URL, version, path) as attributes, and its message says what to do.
No error message ever contains a token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class BfaError(Exception):
    """Root of every error raised by intake-bfa.

    Parameters
    ----------
    message
        Human-readable explanation, including how to fix the problem.
    **context
        Structured data about the failure (``url``, ``version``, ``path``...),
        exposed as attributes of the exception.
    """

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context
        for key, value in context.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        # KeyError's default __str__ quotes the message; keep every subclass readable.
        return self.message

    def __reduce__(self):
        # Exceptions with keyword-only context must still pickle (multiprocessing, dask).
        return (_rebuild, (type(self), self.message, self.context))


def _rebuild(cls: type[BfaError], message: str, context: dict[str, Any]) -> BfaError:
    return cls(message, **context)


class ConfigError(BfaError, ValueError):
    """A configuration value (argument or ``BFA_*`` variable) is invalid."""


class CatalogError(BfaError, ValueError):
    """A catalog YAML file is missing, malformed or names unknown readers."""


class DatasetNotFoundError(BfaError, KeyError):
    """The dataset name is not one that intake-bfa publishes."""


class VersionNotFoundError(BfaError, LookupError):
    """No release holds the requested dataset version."""


class DatasetPathNotFoundError(DatasetNotFoundError, FileNotFoundError):
    """A ``bfa://`` path names no dataset of the release: also a ``FileNotFoundError``,
    which fsspec and its callers (pandas, pyarrow, Dask) catch for a missing path."""


class VersionPathNotFoundError(VersionNotFoundError, FileNotFoundError):
    """A ``bfa://`` path names a version no release holds: also a ``FileNotFoundError``."""


class RepoNotFoundError(BfaError, FileNotFoundError):
    """The configured repository does not exist or is not visible to this token."""


class ManifestError(BfaError, ValueError):
    """A release manifest is missing, malformed or unsafe."""


class IntegrityError(BfaError, ValueError):
    """Downloaded bytes do not match the published size or sha256."""


class DownloadError(BfaError, OSError):
    """A network request failed (connection, HTTP status, timeout)."""


class RateLimitError(DownloadError):
    """A rate limit is exhausted: the GitHub API's, or a download host's (HTTP 429)."""


class AuthenticationError(DownloadError, PermissionError):
    """The server rejected the credentials (bad or missing ``GITHUB_TOKEN``)."""


class NotCachedError(BfaError, FileNotFoundError):
    """The data is not in the local cache and cannot be downloaded (offline)."""


class CacheError(BfaError, OSError):
    """The cache folder cannot be written: read-only, full, not a folder, a file-size limit.

    Also an ``OSError`` carrying the cause's ``errno``, ``strerror`` and ``filename``, so
    code that catches ``OSError`` or checks ``err.errno == errno.ENOSPC`` keeps working.
    The message names the folder, the cause and the fix (``BFA_CACHE_DIR``, the space
    needed). Attributes: ``path`` (what could not be written), ``cache_dir``, ``kind``
    (``"read_only"``, ``"no_space"``, ``"file_too_big"``, ``"not_a_folder"`` or
    ``"other"``) and, for ``"no_space"``, ``need`` and ``free`` in bytes (None if unknown).
    """


class OutputError(BfaError, OSError):
    """A file the user asked for (``--output FILE``) cannot be written; nothing was left.

    Like :class:`CacheError` it carries ``errno``, ``strerror``, ``filename``, ``path`` and
    ``kind``; the fix is another ``--output`` (or making its folder writable).
    """


class QueryError(BfaError, ValueError):
    """A read or query asked for columns, filters or values that do not exist."""


class CollectError(BfaError, RuntimeError):
    """A collect run failed as a whole (too many symbols failed); nothing was saved."""


class PublishError(BfaError, RuntimeError):
    """A release cannot be published (e.g. that version is already out with other bytes)."""


class MissingDependencyError(BfaError, ImportError):
    """An optional dependency (matplotlib, s3fs, FastAPI...) is not installed."""


class MirrorError(BfaError, OSError):
    """A mirror sync failed: the bucket cannot be reached or written, or an object differs."""


class StatsError(BfaError, ValueError):
    """Download statistics cannot be computed (e.g. a history file that is not ours)."""


def nearest(wanted: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` candidates closest to ``wanted``.

    Versions are ISO dates, so "closest" is by date distance when both parse as
    dates; otherwise by string similarity.

    Parameters
    ----------
    wanted
        The value the user asked for.
    candidates
        The values that exist.
    n
        How many suggestions to return.

    Returns
    -------
    list of str
        The suggestions, closest first.
    """
    import datetime as dt
    import difflib

    pool = list(dict.fromkeys(candidates))
    try:
        target = dt.date.fromisoformat(wanted[:10])
    except ValueError:
        target = None
    if target is not None:
        dated = []
        for c in pool:
            try:
                dated.append((abs((dt.date.fromisoformat(c[:10]) - target).days), c))
            except ValueError:
                continue
        if dated:
            return [c for _, c in sorted(dated)[:n]]
    return difflib.get_close_matches(wanted, pool, n=n, cutoff=0.0)
