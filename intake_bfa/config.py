"""Configuration, read at call time: explicit argument > ``BFA_*`` environment > default.

Nothing here runs at import time and nothing is cached across calls, so a
notebook that changes ``os.environ`` sees the change on the next call.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

from intake_bfa.errors import ConfigError

#: The repository that publishes the data today (old "rolling latest" layout);
#: intake-bfa detects the layout, so users get real data on day one.
DEFAULT_REPO = "terrylica/binance-futures-availability"
DEFAULT_API_URL = "https://api.github.com"
DEFAULT_TTL = 24 * 3600.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Total seconds resolving "latest" may take before the cached version is served (or the
#: call fails): a silent API must not hold a notebook for minutes.
DEFAULT_RESOLVE_TIMEOUT = 15.0
DEFAULT_RETRIES = 5
DEFAULT_RETRY_TIME = 300.0
DEFAULT_RETRY_BACKOFF = 0.5

_REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Settings:
    """Resolved configuration for one call.

    Attributes
    ----------
    repo
        GitHub ``owner/name`` holding the releases (``BFA_REPO``).
    api_url
        Base URL of the GitHub REST API (``BFA_API_URL``), without trailing slash.
    cache_dir
        Root of the local cache (``BFA_CACHE_DIR``).
    token
        Optional GitHub token (``GITHUB_TOKEN``); never shown in ``repr``.
    offline
        Never touch the network (``BFA_OFFLINE``).
    ttl
        Seconds before "latest" is resolved again (``BFA_TTL``).
    timeout
        Per-read timeout in seconds (``BFA_TIMEOUT``): how long a download may stall.
    connect_timeout
        Seconds to establish a connection (``BFA_CONNECT_TIMEOUT``).
    resolve_timeout
        Total seconds resolving ``"latest"`` may take, retries included
        (``BFA_RESOLVE_TIMEOUT``); past it the cached version is served, or the call fails.
    retries
        Attempts per request, first one included (``BFA_RETRIES``).
    retry_time
        Seconds a request may spend waiting between attempts in total (``BFA_RETRY_TIME``).
    retry_backoff
        Base of the full-jitter exponential backoff, seconds (``BFA_RETRY_BACKOFF``).
    mirrors
        URL templates tried after the release asset (``BFA_MIRRORS``), e.g.
        ``https://cdn.example.com/bfa/{version}/{asset}``.
    source
        A local release folder read instead of the release server (``BFA_SOURCE``); see
        :mod:`intake_bfa.local_source`. ``None`` reads GitHub releases of ``repo``.
    """

    repo: str
    api_url: str
    cache_dir: Path
    token: str | None = field(default=None, repr=False)
    offline: bool = False
    ttl: float = DEFAULT_TTL
    timeout: float = DEFAULT_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    resolve_timeout: float = DEFAULT_RESOLVE_TIMEOUT
    retries: int = DEFAULT_RETRIES
    retry_time: float = DEFAULT_RETRY_TIME
    retry_backoff: float = DEFAULT_RETRY_BACKOFF
    mirrors: tuple[str, ...] = ()
    source: Path | None = None

    @property
    def owner(self) -> str:
        """Repository owner."""
        return self.repo.split("/", 1)[0]

    @property
    def name(self) -> str:
        """Repository name."""
        return self.repo.split("/", 1)[1]

    @property
    def api_origin(self) -> str:
        """``scheme://host[:port]`` of the API: the only origin a token is sent to."""
        return url_origin(self.api_url)

    def with_(self, **changes) -> Settings:
        """Return a copy with some fields changed."""
        return replace(self, **changes)


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased: what a token is scoped to."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def default_cache_dir() -> Path:
    """The platform's user cache folder for intake-bfa (honours ``XDG_CACHE_HOME``)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("intake-bfa", appauthor=False))


def parse_bool(name: str, raw: str) -> bool:
    """Parse a boolean environment value, or raise :class:`ConfigError`."""
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off",
        variable=name,
        value=raw,
    )


def parse_duration(name: str, raw: str | float | int) -> float:
    """Parse seconds given as a number or with a unit suffix (``90``, ``30m``, ``24h``, ``2d``)."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    else:
        match = _DURATION_RE.match(str(raw))
        if not match:
            raise ConfigError(
                f"{name}={raw!r} is not a duration; use seconds (3600) or a number with "
                "a unit s/m/h/d (24h)",
                variable=name,
                value=raw,
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if seconds < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative", variable=name, value=raw)
    return seconds


def check_repo(repo: str, source: str = "repo") -> str:
    """Validate an ``owner/name`` repository string."""
    if not isinstance(repo, str) or not _REPO_RE.fullmatch(repo) or ".." in repo:
        raise ConfigError(
            f"{source}={repo!r} is not a GitHub repository; use the form owner/name "
            f"(for example {DEFAULT_REPO})",
            variable=source,
            value=repo,
        )
    return repo


def check_api_url(url: str, source: str = "api_url") -> str:
    """Validate an API base URL and strip its trailing slash."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{source}={url!r} is not an http(s) URL; use for example {DEFAULT_API_URL} "
            "or https://github.example.com/api/v3",
            variable=source,
            value=url,
        )
    if parts.query or parts.fragment:
        raise ConfigError(
            f"{source}={url!r} must not have a query string or fragment",
            variable=source,
            value=url,
        )
    return url.rstrip("/")


MIRROR_FIELDS = ("asset", "version", "tag", "repo", "owner", "name")


def check_mirrors(templates: Sequence[str] | str, source: str = "mirrors") -> tuple[str, ...]:
    """Validate mirror URL templates (``{asset}`` required; see :data:`MIRROR_FIELDS`)."""
    if isinstance(templates, str):
        templates = templates.replace(",", " ").split()
    checked = []
    for template in templates:
        parts = urlsplit(template) if isinstance(template, str) else None
        fields = {f for _, f, _, _ in string.Formatter().parse(template or "") if f}
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.netloc
            or "asset" not in fields
            or not fields <= set(MIRROR_FIELDS)
        ):
            raise ConfigError(
                f"{source}: {template!r} is not a mirror URL template; use an http(s) URL "
                "with {asset} and optionally {version}, {tag}, {repo}, {owner}, {name}, "
                "e.g. https://cdn.example.com/bfa/{version}/{asset}",
                variable=source,
                value=template,
            )
        checked.append(template)
    return tuple(checked)


#: Environment variables :func:`get_settings` reads (XDG_CACHE_HOME and HOME through
#: platformdirs, for the default cache folder).
ENV_VARS = (
    "BFA_REPO",
    "BFA_API_URL",
    "BFA_CACHE_DIR",
    "GITHUB_TOKEN",
    "BFA_OFFLINE",
    "BFA_TTL",
    "BFA_TIMEOUT",
    "BFA_RETRIES",
    "BFA_RETRY_TIME",
    "BFA_RETRY_BACKOFF",
    "BFA_MIRRORS",
    "BFA_SOURCE",
    "BFA_CONNECT_TIMEOUT",
    "BFA_RESOLVE_TIMEOUT",
    "XDG_CACHE_HOME",
    "HOME",
    "LOCALAPPDATA",
)
_ENV_KEYS = tuple(os.fsencode(name) for name in ENV_VARS) if os.name == "posix" else ()
_SETTINGS_MEMO_SIZE = 64
#: Validated settings by (arguments, environment values): the environment is still read at
#: every call, only the validation of an unchanged configuration is reused.
_settings_memo: dict[tuple, Settings] = {}


def _environment() -> tuple:
    """The values of :data:`ENV_VARS` now (the memo key's environment part)."""
    # os.environ.get costs ~1.3 us a name (it encodes the key and decodes the value); on
    # POSIX, CPython keeps the raw values in os.environ._data, which every os.environ
    # update (and so monkeypatch.setenv) writes through: 15x faster, same values. This is
    # on the hot path of every bfa:// call, which resolves a path several times.
    data = getattr(os.environ, "_data", None)
    if _ENV_KEYS and isinstance(data, dict):
        return tuple(map(data.get, _ENV_KEYS))
    return tuple(map(os.environ.get, ENV_VARS))


def get_settings(
    repo: str | None = None,
    api_url: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | None = None,
    offline: bool | None = None,
    ttl: float | str | None = None,
    timeout: float | str | None = None,
    mirrors: Sequence[str] | str | None = None,
    source: str | os.PathLike | None = None,
) -> Settings:
    """Resolve the configuration for one call.

    Each value comes from the explicit argument if given, else from its
    environment variable, else from the default.

    Parameters
    ----------
    repo
        ``owner/name``; else ``BFA_REPO``; else :data:`DEFAULT_REPO`.
    api_url
        API base URL; else ``BFA_API_URL``; else ``https://api.github.com``.
    cache_dir
        Cache root; else ``BFA_CACHE_DIR``; else the platform user cache dir.
    token
        GitHub token; else ``GITHUB_TOKEN``; else anonymous.
    offline
        Never use the network; else ``BFA_OFFLINE``; else False.
    ttl
        Seconds (or ``24h``) before "latest" is re-resolved; else ``BFA_TTL``; else 24 h.
    timeout
        Per-read timeout; else ``BFA_TIMEOUT``; else 30 s. The connect timeout
        (``BFA_CONNECT_TIMEOUT``, 10 s) and resolution's budget (``BFA_RESOLVE_TIMEOUT``,
        15 s) come from the environment alone.
    mirrors
        Mirror URL templates; else ``BFA_MIRRORS`` (space or comma separated); else none.
    source
        A local release folder to read instead of the release server; else ``BFA_SOURCE``;
        else none (GitHub releases of ``repo``).

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        When a value is invalid; the message names the variable and the fix.
    """
    if isinstance(mirrors, list):
        mirrors = tuple(mirrors)
    key = (
        repo,
        api_url,
        None if cache_dir is None else os.fspath(cache_dir),
        token,
        offline,
        ttl,
        timeout,
        mirrors,
        None if source is None else os.fspath(source),
        _environment(),
    )
    try:
        hit = _settings_memo.get(key)
    except TypeError:  # an unhashable argument: validate without the memo
        return _build_settings(
            repo, api_url, cache_dir, token, offline, ttl, timeout, mirrors, source
        )
    if hit is None:
        hit = _build_settings(
            repo, api_url, cache_dir, token, offline, ttl, timeout, mirrors, source
        )
        if len(_settings_memo) >= _SETTINGS_MEMO_SIZE:
            _settings_memo.clear()
        _settings_memo[key] = hit
    return hit


def _build_settings(
    repo, api_url, cache_dir, token, offline, ttl, timeout, mirrors, source
) -> Settings:
    env = os.environ
    if repo is not None:
        repo = check_repo(repo)
    elif env.get("BFA_REPO"):
        repo = check_repo(env["BFA_REPO"], "BFA_REPO")
    else:
        repo = DEFAULT_REPO

    if api_url is not None:
        api_url = check_api_url(api_url)
    elif env.get("BFA_API_URL"):
        api_url = check_api_url(env["BFA_API_URL"], "BFA_API_URL")
    else:
        api_url = DEFAULT_API_URL

    if cache_dir is not None:
        cache_path = Path(cache_dir).expanduser()
    elif env.get("BFA_CACHE_DIR"):
        cache_path = Path(env["BFA_CACHE_DIR"]).expanduser()
    else:
        cache_path = default_cache_dir()

    if token is None:
        token = env.get("GITHUB_TOKEN") or None

    if offline is None:
        offline = parse_bool("BFA_OFFLINE", env.get("BFA_OFFLINE", ""))

    if ttl is not None:
        ttl_s = parse_duration("ttl", ttl)
    elif env.get("BFA_TTL"):
        ttl_s = parse_duration("BFA_TTL", env["BFA_TTL"])
    else:
        ttl_s = DEFAULT_TTL

    if timeout is not None:
        timeout_s = parse_duration("timeout", timeout)
    elif env.get("BFA_TIMEOUT"):
        timeout_s = parse_duration("BFA_TIMEOUT", env["BFA_TIMEOUT"])
    else:
        timeout_s = DEFAULT_TIMEOUT
    if timeout_s <= 0:
        raise ConfigError("timeout must be positive", variable="BFA_TIMEOUT", value=timeout)
    connect_s = _positive_duration("BFA_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
    resolve_s = _positive_duration("BFA_RESOLVE_TIMEOUT", DEFAULT_RESOLVE_TIMEOUT)

    if source is not None:
        source_path = check_source(source, "source")
    elif env.get("BFA_SOURCE"):
        source_path = check_source(env["BFA_SOURCE"], "BFA_SOURCE")
    else:
        source_path = None

    raw_retries = env.get("BFA_RETRIES", "")
    if raw_retries:
        if (
            not raw_retries.strip().isascii()
            or not raw_retries.strip().isdigit()
            or int(raw_retries) < 1
        ):
            raise ConfigError(
                f"BFA_RETRIES={raw_retries!r} must be a whole number of attempts, at least 1",
                variable="BFA_RETRIES",
                value=raw_retries,
            )
        retries = int(raw_retries)
    else:
        retries = DEFAULT_RETRIES
    retry_time = parse_duration("BFA_RETRY_TIME", env.get("BFA_RETRY_TIME") or DEFAULT_RETRY_TIME)
    backoff = parse_duration(
        "BFA_RETRY_BACKOFF", env.get("BFA_RETRY_BACKOFF") or DEFAULT_RETRY_BACKOFF
    )

    return Settings(
        repo=repo,
        api_url=api_url,
        cache_dir=cache_path,
        token=token,
        offline=bool(offline),
        ttl=ttl_s,
        timeout=timeout_s,
        connect_timeout=connect_s,
        resolve_timeout=resolve_s,
        retries=retries,
        retry_time=retry_time,
        retry_backoff=backoff,
        mirrors=check_mirrors(
            mirrors if mirrors is not None else env.get("BFA_MIRRORS", ""),
            "mirrors" if mirrors is not None else "BFA_MIRRORS",
        ),
        source=source_path,
    )


def _positive_duration(name: str, default: float) -> float:
    raw = os.environ.get(name)
    seconds = parse_duration(name, raw) if raw else default
    if seconds <= 0:
        raise ConfigError(f"{name}={raw!r} must be positive", variable=name, value=raw)
    return seconds


def check_source(path: str | os.PathLike, source: str = "source") -> Path:
    """Validate a release folder (``BFA_SOURCE``): an existing folder, made absolute.

    Its content is read when a version is resolved (:mod:`intake_bfa.local_source`).
    """
    try:
        folder = Path(path).expanduser()
    except TypeError:
        folder = None
    if folder is None or not str(path).strip():
        raise ConfigError(
            f"{source}={path!r} is not a folder path; point it at a release folder "
            "(what `bfa build` or `bfa demo` writes)",
            variable=source,
            value=path,
        )
    if not folder.is_dir():
        raise ConfigError(
            f"{source}={os.fspath(path)!r}: no such folder; point it at a release folder "
            "(what `bfa build` or `bfa demo` writes), or unset it to read GitHub releases",
            variable=source,
            value=os.fspath(path),
        )
    return folder.resolve()
