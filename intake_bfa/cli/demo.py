"""``bfa demo``: the user journey on SYNTHETIC releases that keep working afterwards.

Writes two synthetic dated releases to a persistent folder (:mod:`intake_bfa.demo`), walks
through them (datasets and versions, the first read, a cached re-read, "which symbols were
available on 2021-03-04", a pinned version, DuckDB, symbols) and ends with the one line
that points the library at them. ``--serve`` serves the same releases through the local
GitHub-like release server until Ctrl-C instead. Needs no internet.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(n: int, title: str) -> None:
    _say(f"\n[{n}] {title}")


def run_demo(
    *,
    folder: str | None = None,
    symbols: int = 200,
    serve: bool = False,
    quiet: bool = False,
    cache_dir: str | None = None,
) -> int:
    """Run the demo; returns the process exit status."""
    from intake_bfa.demo import DEMO_NOTE, DEMO_VERSIONS, write_demo_releases

    _say("=" * 78)
    _say(DEMO_NOTE + ".")
    _say("=" * 78)
    started = time.perf_counter()
    root = write_demo_releases(Path(folder) if folder else None, symbols=symbols)
    _say(
        f"{len(DEMO_VERSIONS)} synthetic releases ({', '.join(DEMO_VERSIONS)}; {symbols} "
        f"symbols) in {root} ({time.perf_counter() - started:.1f} s)"
    )
    if serve:
        return _serve(root)
    # The walk-through reads like a user would (the catalog, BFA_* variables): point this
    # process at the folder while it runs, then put the environment back.
    wanted = {"BFA_SOURCE": str(root), "BFA_CACHE_DIR": cache_dir}
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update({k: v for k, v in wanted.items() if v is not None})
    try:
        _walk(root, quiet)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    from intake_bfa.demo import source_line

    _say("\nThe data stays there. Point intake-bfa at it in any shell (or os.environ in Python):")
    _say(source_line(root))
    return 0


def _walk(root: Path, quiet: bool) -> None:
    from intake_bfa.catalog import open_catalog
    from intake_bfa.config import get_settings
    from intake_bfa.datasets import local_path
    from intake_bfa.demo import DEMO_VERSIONS
    from intake_bfa.display.text import dict_table
    from intake_bfa.progress import progress_callback
    from intake_bfa.resolve import list_versions

    settings = get_settings()
    _step(1, "Open the catalog: intake_bfa.open_catalog()")
    cat = open_catalog()
    _say(f"datasets: {', '.join(cat)}")
    rows = [
        {
            "version": v.version + (" (latest)" if v.latest else ""),
            "coverage": f"{v.coverage_start} .. {v.coverage_end}",
            "rows": f"{v.rows:,}",
            "size": f"{v.size / 1e6:.1f} MB",
        }
        for v in list_versions(settings=settings)
    ]
    _say(dict_table(rows, ["version", "coverage", "rows", "size"]))

    _step(2, "First read copies the file into the cache, verified (sha256): .read()")
    t0 = time.perf_counter()
    bar = progress_callback(quiet, label="daily_availability.parquet")
    local_path("daily_availability", settings=settings, callback=bar)
    if bar is not None:
        bar.close()
    df = cat.daily_availability.read()
    _say(f"{len(df):,} rows x {df.shape[1]} columns in {time.perf_counter() - t0:.2f} s")

    _step(3, "Second read comes from the verified cache")
    t0 = time.perf_counter()
    df = cat.daily_availability.read()
    _say(f"{len(df):,} rows in {time.perf_counter() - t0:.2f} s")

    _step(4, "Which symbols were available on 2021-03-04? (filters pushed down to Parquet)")
    day = cat.daily_availability.read(
        start="2021-03-04", end="2021-03-04", columns=["symbol", "available"]
    )
    names = sorted(day.loc[day["available"], "symbol"])
    _say(f"{len(names)} symbols: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}")

    older = DEMO_VERSIONS[0]
    _step(5, f"A pinned version is reproducible forever: read(version={older!r})")
    pinned = cat.daily_availability.read(version=older, columns=["date"])
    _say(f"{len(pinned):,} rows, last date {pinned['date'].max()}")

    _step(6, "DuckDB over the same local file: cat.daily_availability.to_duckdb()")
    rel = cat.daily_availability.to_duckdb()
    yearly = (
        rel.filter("available")
        .aggregate("year(date) AS year, count(DISTINCT symbol) AS listed_symbols", "year(date)")
        .order("year")
    )
    _say(
        dict_table(
            [dict(zip(yearly.columns, r, strict=True)) for r in yearly.fetchall()],
            yearly.columns,
        )
    )

    _step(7, "Symbols: one row per contract (cat.symbols.read())")
    sym = cat.symbols.read()
    kinds = sym["contract_kind"].value_counts().to_dict()
    _say(f"{len(sym)} symbols; {int(sym['listed_now'].sum())} listed now; kinds: {kinds}")
    _say(f"\ncache: {settings.cache_dir} (the demo's files are kept apart from real data)")


def _serve(root: Path) -> int:
    """Serve the demo releases like GitHub on 127.0.0.1 until Ctrl-C."""
    from intake_bfa.testing.releases import SAMPLE_REPO, publish_dated
    from intake_bfa.testing.server import ReleaseServer

    with ReleaseServer() as server:
        for release in sorted(root.glob("data-*")):
            publish_dated(server, SAMPLE_REPO, release)
        _say(f"\nServing them like GitHub at {server.api_url} until Ctrl-C. In another shell:")
        _say(f"export BFA_API_URL={server.api_url} BFA_REPO={SAMPLE_REPO}")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            _say("stopped")
    return 0
