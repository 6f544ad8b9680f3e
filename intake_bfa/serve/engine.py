"""What ``bfa serve`` answers from: pinned versions, a pool of queries each, SQL limits.

The server never touches the network while it serves: :meth:`Engine.start` resolves
and fetches the versions it will serve (the only moment the GitHub API or a download
may be used), then every request runs on offline settings against verified cached
files. A :class:`~intake_bfa.query.Query` holds DuckDB connections and is not
thread-safe, so each version keeps a small pool of them; a request borrows one.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from intake_bfa.config import Settings, get_settings
from intake_bfa.errors import BfaError, ConfigError, QueryError, VersionNotFoundError, nearest

log = logging.getLogger(__name__)

#: Seconds past the SQL timeout before a silent worker is killed: DuckDB's own interrupt
#: normally answers first; this covers a worker stuck outside DuckDB.
GRACE = 5.0

#: Datasets fetched at start: what the endpoints and user SQL read.
SERVED_DATASETS = ("daily_availability", "symbols", "volume_rankings", "availability_events")
#: Served when the release has them: the rolling layout publishes no event history.
OPTIONAL_DATASETS = ("availability_events",)


@dataclass(frozen=True)
class Limits:
    """Bounds on what one request may cost.

    Attributes
    ----------
    max_rows
        Longest result any endpoint returns; longer SQL results are refused (4xx).
    timeout
        Seconds a query may run before it is interrupted (4xx).
    max_sql_length
        Longest SQL text accepted, in characters.
    max_concurrent_sql
        SQL queries running at once; more wait up to ``queue_timeout``, then get 429.
    queue_timeout
        Seconds a request waits for a free query slot.
    memory_limit
        DuckDB ``memory_limit`` of each user-SQL connection (what its operators such
        as ORDER BY or GROUP BY may hold; the result itself is capped by
        ``max_rows``/``max_response_bytes`` while it is fetched).
    threads
        DuckDB ``threads`` of each user-SQL connection.
    max_response_bytes
        Largest result (Arrow bytes, checked while it is fetched) and response body,
        in bytes (4xx beyond).
    worker_memory
        Memory each user-SQL worker process may add to its start-up footprint, in
        bytes (its ``RLIMIT_DATA`` is that footprint plus this); None:
        ``memory_limit`` plus twice ``max_response_bytes`` plus a baseline (see
        :func:`intake_bfa.serve.sql_workers.worker_memory`). A query needing more is
        refused (4xx) and cannot grow the server.
    """

    max_rows: int = 10_000
    timeout: float = 10.0
    max_sql_length: int = 10_000
    max_concurrent_sql: int = 4
    queue_timeout: float = 5.0
    memory_limit: str = "1GB"
    threads: int = 2
    max_response_bytes: int = 64 << 20
    worker_memory: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_rows",
            "max_sql_length",
            "max_concurrent_sql",
            "threads",
            "max_response_bytes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        for name in ("timeout", "queue_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.worker_memory is not None and self.worker_memory < 1:
            raise ValueError(f"worker_memory must be at least 1, not {self.worker_memory}")

    def worker_cap(self) -> int:
        """Bytes each user-SQL worker may add: ``worker_memory`` or the default."""
        from intake_bfa.serve.sql_workers import worker_memory

        if self.worker_memory is not None:
            return self.worker_memory
        return worker_memory(self.memory_limit, self.max_response_bytes)


@dataclass
class ServedVersion:
    """One pinned version and its pool of :class:`~intake_bfa.query.Query` objects."""

    version: str
    coverage: tuple[str, str]
    datasets: dict[str, dict[str, Any]]
    layout: str
    synthetic: bool
    _pool: queue.LifoQueue = field(default_factory=queue.LifoQueue, repr=False)
    _made: int = field(default=0, repr=False)  # Query objects alive (pooled or lent)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (no paths, no settings)."""
        return {
            "version": self.version,
            "coverage": {"start": self.coverage[0], "end": self.coverage[1]},
            "layout": self.layout,
            "synthetic": self.synthetic,
            "datasets": self.datasets,
        }


class Engine:
    """The versions a server answers from, pinned at :meth:`start`.

    Parameters
    ----------
    versions
        Versions to serve (``"latest"`` is resolved once, at start); the first is the
        default of requests that name none.
    settings
        Configuration used at start to resolve and fetch; requests then run offline.
    limits
        Per-request bounds.
    pool_size
        Query objects per version, made on demand: at most this many queries of a
        version run at once (each is a DuckDB instance with its own buffers, so this
        bounds memory too); more requests wait up to ``limits.queue_timeout``, then
        get 429.
    database
        Also fetch ``availability_db``, so user SQL may ask for schema ``db``.
    """

    def __init__(
        self,
        versions: Sequence[str] = ("latest",),
        *,
        settings: Settings | None = None,
        limits: Limits | None = None,
        pool_size: int = 8,
        database: bool = False,
    ) -> None:
        if not versions:
            raise ValueError("serve at least one version")
        self.requested = list(versions)
        self.settings = settings or get_settings()
        self.limits = limits or Limits()
        self.pool_size = pool_size
        self.database = database
        self.versions: dict[str, ServedVersion] = {}
        self.default: str | None = None
        self._offline = dataclasses.replace(self.settings, offline=True)
        self._sql_slots = threading.BoundedSemaphore(self.limits.max_concurrent_sql)
        self._workers: Any = None  # SqlWorkers, made at start

    # --- start -------------------------------------------------------------------------------

    def start(self) -> Engine:
        """Resolve every requested version and make its datasets local (may download).

        Raises
        ------
        BfaError
            When a version cannot be resolved or fetched (e.g. offline and not cached).
        """
        from intake_bfa.datasets import ensure_local
        from intake_bfa.resolve import pin

        for wanted in self.requested:
            manifest = pin(wanted, self.settings)
            if manifest.version in self.versions:
                continue
            for name in SERVED_DATASETS + (("availability_db",) if self.database else ()):
                if name in OPTIONAL_DATASETS and name not in manifest.datasets:
                    continue
                ensure_local(self.settings, manifest, name)  # downloads once; offline later
            # The first pooled query, warmed (views made, files opened) so the first
            # request does not pay for it.
            warm = self._new_query(manifest.version)
            lo, hi = warm.coverage
            warm.snapshot(hi)
            try:  # applies the SQL limits once: a bad --memory-limit fails the start
                warm.sql("SELECT 1")
            except QueryError as err:
                warm.close()
                raise QueryError(
                    f"the SQL limits are not valid for DuckDB ({err}); check --memory-limit",
                    memory_limit=self.limits.memory_limit,
                ) from None
            served = ServedVersion(
                version=manifest.version,
                coverage=(str(lo), str(hi)),
                datasets={
                    name: {"rows": e.rows, "size": e.size, "sha256": e.sha256}
                    for name, e in manifest.datasets.items()
                    if name in SERVED_DATASETS
                },
                layout=manifest.layout,
                synthetic=manifest.synthetic,
            )
            served._pool.put(warm)
            served._made = 1
            self.versions[manifest.version] = served
            log.info("serving %s of %s (%s .. %s)", manifest.version, self.settings.repo, lo, hi)
        self.default = next(iter(self.versions))
        try:
            cap = self.limits.worker_cap()
        except ValueError as err:
            raise ConfigError(
                f"{err}; give --sql-worker-memory when --memory-limit is not a size",
                memory_limit=self.limits.memory_limit,
            ) from None
        from intake_bfa.serve.sql_workers import SqlWorkers

        self._workers = SqlWorkers(
            self.limits.max_concurrent_sql,
            settings=self._offline,
            versions=list(self.versions),
            database=self.database,
            sql_limits={"memory_limit": self.limits.memory_limit, "threads": self.limits.threads},
            memory=cap,
        ).start()
        log.info(
            "user SQL runs in %d worker processes, each allowed %d MiB past its start",
            self.limits.max_concurrent_sql,
            cap >> 20,
        )
        return self

    # --- requests ----------------------------------------------------------------------------

    def pick(self, version: str | None) -> ServedVersion:
        """The served version a request names (None or ``"latest"``: the default)."""
        if self.default is None:
            raise RuntimeError("Engine.start() has not run")
        if version in (None, "", "latest"):
            return self.versions[self.default]
        served = self.versions.get(version)
        if served is None:
            close = nearest(str(version), self.versions)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise VersionNotFoundError(
                f"version {version!r} is not served here; served: {', '.join(self.versions)}{hint}",
                version=version,
                available=list(self.versions),
            )
        return served

    def _new_query(self, version: str) -> Any:
        from intake_bfa.query import Query

        q = Query(version, settings=self._offline)
        q.sql_limits = {"memory_limit": self.limits.memory_limit, "threads": self.limits.threads}
        return q

    @contextmanager
    def query(self, version: str | None) -> Iterator[Any]:
        """Borrow a :class:`~intake_bfa.query.Query` of ``version`` (offline, pinned)."""
        served = self.pick(version)
        q = self._borrow(served)
        healthy = True
        try:
            yield q
        except BfaError:
            raise  # a refused request leaves the Query usable
        except BaseException:
            healthy = False
            raise
        finally:
            if healthy:
                served._pool.put(q)
            else:  # unknown state: replace it (the slot is freed for a new one)
                q.close()
                with served._lock:
                    served._made -= 1

    def _borrow(self, served: ServedVersion) -> Any:
        try:
            return served._pool.get_nowait()
        except queue.Empty:
            pass
        with served._lock:
            make = served._made < self.pool_size
            if make:
                served._made += 1
        if make:
            try:
                return self._new_query(served.version)
            except BaseException:
                with served._lock:
                    served._made -= 1
                raise
        try:
            return served._pool.get(timeout=self.limits.queue_timeout)
        except queue.Empty:
            raise QueryError(
                f"{self.pool_size} queries of version {served.version} are already running; "
                "retry shortly",
                reason="busy",
            ) from None

    def sql(self, text: str, version: str | None, *, database: bool = False) -> tuple[str, Any]:
        """Run user SQL under the limits; return ``(version, pyarrow.Table)``.

        Raises
        ------
        QueryError
            Refused or failed SQL; context ``reason`` says why for limits
            (``too_long``, ``busy``, ``timeout``, ``too_many_rows``, ``too_large``).
            The result is fetched in batches, the row and byte caps checked as they
            arrive, so a huge result is stopped early instead of being built whole.
            SQL reading the settings or the catalog (which name server paths) is
            refused (:func:`intake_bfa.query.sql.check_served`). The query runs in
            a worker process that may grow by :meth:`Limits.worker_cap` bytes: past it, or
            when DuckDB runs out of ``memory_limit``, ``reason`` is ``too_large``.
        """
        limits = self.limits
        if database and not self.database:
            raise QueryError(
                "this server does not serve availability_db; start it with "
                "bfa serve --with-database to query schema db",
                reason="no_database",
            )
        if len(text) > limits.max_sql_length:
            raise QueryError(
                f"the SQL text has {len(text):,} characters; the limit is "
                f"{limits.max_sql_length:,}",
                reason="too_long",
            )
        from intake_bfa.query.sql import TABLES, check_select, check_served

        check_select(text)
        check_served(text, TABLES, database=database)  # no settings, catalog or paths
        if not self._sql_slots.acquire(timeout=limits.queue_timeout):
            raise QueryError(
                f"{limits.max_concurrent_sql} SQL queries are already running; retry shortly",
                reason="busy",
            )
        try:
            served = self.pick(version)
            if self._workers is None:
                raise RuntimeError("Engine.start() has not run")
            request = (
                served.version,
                text,
                database,
                {
                    "timeout": limits.timeout,
                    "max_rows": limits.max_rows,
                    "max_bytes": limits.max_response_bytes,
                },
            )
            # The worker runs the SQL, but a pooled Query of the version is held
            # meanwhile: --pool-size keeps bounding the queries of a version running at
            # once, SQL included, as documented.
            with self.query(served.version):
                status, value = self._run_in_worker(request)
            if status == "error":
                raise value
            return served.version, value
        finally:
            self._sql_slots.release()

    def _run_in_worker(self, request: tuple) -> tuple[str, Any]:
        """A worker's reply to ``request``; its failures as :class:`QueryError`."""
        limits = self.limits
        try:
            return self._workers.run(
                request, wait=limits.timeout + GRACE, queue_timeout=limits.queue_timeout
            )
        except TimeoutError:
            raise QueryError(
                f"the query ran longer than {limits.timeout:g} s and was stopped; narrow "
                "it (fewer days or symbols) or aggregate",
                reason="timeout",
                timeout=limits.timeout,
            ) from None
        except ChildProcessError as err:
            # Past RLIMIT_DATA, DuckDB or the allocator may abort the process rather than
            # raise: the likeliest cause of a dead worker is the memory cap.
            log.warning("a SQL worker died (%s); restarting it", err)
            raise QueryError(
                "the query needs more memory than a SQL worker may use "
                f"({self._workers.memory >> 20:,} MiB); narrow it or aggregate",
                reason="too_large",
                memory=self._workers.memory,
            ) from None

    def close(self) -> None:
        """Stop the SQL workers and close every pooled query."""
        if self._workers is not None:
            self._workers.close()
        for served in self.versions.values():
            while True:
                try:
                    served._pool.get_nowait().close()
                except queue.Empty:
                    break
