"""``bfa demo``: the user journey on a local, synthetic release. Needs no internet.

Starts the embedded release server on 127.0.0.1 with two synthetic dated
releases, writes a catalog pointing at it, and walks through: datasets and
versions, the first download, a cached re-read, "which symbols were available
on 2021-03-04", a pinned older version and a DuckDB query.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(n: int, title: str) -> None:
    _say(f"\n[{n}] {title}")


def run_demo(*, symbols: int = 200, keep: bool = False, quiet: bool = False) -> int:
    """Run the demo; returns the process exit status."""
    from intake_bfa.catalog import catalog_yaml, open_catalog
    from intake_bfa.config import get_settings
    from intake_bfa.datasets import local_path
    from intake_bfa.display.text import dict_table
    from intake_bfa.progress import progress_callback
    from intake_bfa.releases import list_versions
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer
    from intake_bfa.testing.synthetic import SYNTHETIC_NOTE

    work = Path(tempfile.mkdtemp(prefix="bfa-demo-"))
    saved_env = {k: os.environ.get(k) for k in ("BFA_CACHE_DIR", "BFA_OFFLINE")}
    # The demo must never touch the user's real cache or be blocked by BFA_OFFLINE.
    os.environ["BFA_CACHE_DIR"] = str(work / "cache")
    os.environ.pop("BFA_OFFLINE", None)
    _say("=" * 78)
    _say("intake-bfa demo: " + SYNTHETIC_NOTE)
    _say("Served by a local release server on 127.0.0.1; no internet is used.")
    _say("=" * 78)
    try:
        today = dt.datetime.now(dt.UTC).date()
        newest, older = today.isoformat(), (today - dt.timedelta(days=3)).isoformat()
        started = time.perf_counter()
        samples = SampleReleases(work / "releases", n_symbols=symbols)
        with ReleaseServer() as server:
            samples.publish(server, SAMPLE_REPO, versions=[older, newest])
            _say(
                f"built and published 2 synthetic releases ({symbols} symbols, 2019-12-31 .. "
                f"{today - dt.timedelta(days=1)}) in {time.perf_counter() - started:.1f} s"
            )
            catalog_file = work / "catalog.yaml"
            catalog_file.write_text(catalog_yaml(repo=SAMPLE_REPO, api_url=server.api_url))

            _step(1, f"Open the catalog: intake.open_catalog({catalog_file.name!r})")
            cat = open_catalog(catalog_file)
            _say(f"datasets: {', '.join(cat)}")
            settings = get_settings(repo=SAMPLE_REPO, api_url=server.api_url)
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

            _step(
                2,
                "First read downloads, verifies (sha256) and caches: cat.daily_availability.read()",
            )
            server.clear_requests()
            t0 = time.perf_counter()
            bar = progress_callback(quiet, label="daily_availability.parquet")
            local_path("daily_availability", settings=settings, callback=bar)
            if bar is not None:
                bar.close()
            df = cat.daily_availability.read()
            first = time.perf_counter() - t0
            _say(
                f"{len(df):,} rows x {df.shape[1]} columns in {first:.2f} s "
                f"({len(server.requests)} HTTP requests)"
            )

            _step(3, "Second read comes from the cache: no network at all")
            server.clear_requests()
            t0 = time.perf_counter()
            df = cat.daily_availability.read()
            _say(
                f"{len(df):,} rows in {time.perf_counter() - t0:.2f} s "
                f"({len(server.requests)} HTTP requests)"
            )

            _step(4, "Which symbols were available on 2021-03-04? (filters pushed down to Parquet)")
            day = cat.daily_availability.read(
                start="2021-03-04", end="2021-03-04", columns=["symbol", "available"]
            )
            names = sorted(day.loc[day["available"], "symbol"])
            _say(
                f"{len(names)} symbols: {', '.join(names[:12])}{', ...' if len(names) > 12 else ''}"
            )

            _step(5, f"A pinned version is reproducible forever: read(version={older!r})")
            pinned = cat.daily_availability.read(version=older, columns=["date"])
            _say(f"{len(pinned):,} rows, last date {pinned['date'].max()}")

            _step(6, "DuckDB over the same local file: cat.daily_availability.to_duckdb()")
            rel = cat.daily_availability.to_duckdb()
            yearly = (
                rel.filter("available")
                .aggregate(
                    "year(date) AS year, count(DISTINCT symbol) AS listed_symbols", "year(date)"
                )
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
        where = "kept" if keep else "removed on exit; --keep keeps it"
        _say(f"\ndemo cache: {work / 'cache'} ({where}); your own cache was not touched")
        _say(
            "Done. On real data: pip install intake-bfa; "
            "intake_bfa.open_catalog().daily_availability.read()"
        )
        return 0
    finally:
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
