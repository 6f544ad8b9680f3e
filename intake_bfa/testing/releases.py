"""Build sample releases in both layouts and publish them on a :class:`ReleaseServer`.

Used by the tests, ``bfa demo`` and the benchmarks. Every release built here is
labelled synthetic (manifest, release name and body).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from intake_bfa.producer.build import STORAGE_VERSION, build_release, gzip_file, load_database
from intake_bfa.releases import ROLLING_RANKINGS_ASSET, release_body_metadata
from intake_bfa.testing.server import ReleaseServer
from intake_bfa.testing.synthetic import SYNTHETIC_NOTE, generate_daily_availability, with_history

log = logging.getLogger(__name__)

SAMPLE_REPO = "bfa-sample/binance-futures-availability"


def sample_table(end: dt.date, *, n_symbols: int = 60, seed: int = 7):
    """Synthetic daily_availability from 2019-12-31 to ``end`` for ``n_symbols`` symbols."""
    return generate_daily_availability(n_symbols=n_symbols, end=end, seed=seed)


def build_dated(table: Any, out_dir: Path, version: str, *, events: Any = None) -> Path:
    """Build a project-layout release of ``table`` into ``out_dir`` (labelled synthetic).

    ``events`` is the observation history published as ``availability_events`` (see
    :func:`intake_bfa.testing.synthetic.with_history`); None derives one inexact
    ``appeared`` event per available row at its Last-Modified.
    """
    created = dt.datetime.combine(dt.date.fromisoformat(version), dt.time(9, 30), dt.UTC)
    build_release(
        table,
        out_dir,
        version,
        created_at=created,
        synthetic=True,
        note=SYNTHETIC_NOTE,
        events=events,
    )
    return out_dir


def build_rolling(table: Any, out_dir: Path) -> Path:
    """Build the public project's layout: ``availability.duckdb.gz`` + rankings Parquet only.

    Like the public project's database, it holds ``daily_availability`` and
    ``daily_symbol_counts`` (no ``symbols`` table) and ships no manifest.
    """
    import duckdb

    out_dir.mkdir(parents=True, exist_ok=True)
    dated = Path(tempfile.mkdtemp(prefix=".rolling-", dir=out_dir))
    try:
        # The rankings come from the same SQL as our own build; only the file name differs.
        build_release(table, dated, "rolling", synthetic=True, note=SYNTHETIC_NOTE)
        shutil.copyfile(dated / "volume_rankings.parquet", out_dir / ROLLING_RANKINGS_ASSET)
        db = dated / "legacy.duckdb"
        con = duckdb.connect()
        con.execute("ATTACH ? AS legacy (STORAGE_VERSION ?)", [str(db), STORAGE_VERSION])
        con.execute("USE legacy")
        load_database(con, table)
        con.execute("DROP TABLE symbols")  # the public database has no symbols table
        con.close()
        gzip_file(db, out_dir / "availability.duckdb.gz")
    finally:
        shutil.rmtree(dated, ignore_errors=True)
    return out_dir


def publish_dated(
    server: ReleaseServer, repo: str, release_dir: Path, *, draft: bool = False
) -> dict[str, Any]:
    """Publish a built project-layout release under tag ``data-<version>``."""
    manifest = json.loads((release_dir / "manifest.json").read_text())
    version = manifest["version"]
    assets = {"manifest.json": release_dir / "manifest.json"}
    for entry in manifest["datasets"].values():
        assets[entry["asset"]] = release_dir / entry["asset"]
    meta = {
        "coverage": manifest["coverage"],
        "rows": manifest["datasets"]["daily_availability"]["rows"],
        "synthetic": True,
    }
    return server.add_release(
        repo,
        f"data-{version}",
        assets,
        name=f"Binance futures availability {version} (SYNTHETIC sample)",
        body=f"{SYNTHETIC_NOTE}\n\n{release_body_metadata(meta)}",
        draft=draft,
        created_at=dt.datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")),
    )


def publish_rolling(
    server: ReleaseServer, repo: str, release_dir: Path, *, with_digest: bool = True
) -> dict[str, Any]:
    """Publish (or re-upload) the rolling ``latest`` release of the public layout."""
    names = ("availability.duckdb.gz", ROLLING_RANKINGS_ASSET)
    try:
        release = None
        for name in names:
            release = server.replace_asset(
                repo, "latest", name, release_dir / name, with_digest=with_digest
            )
        return release
    except KeyError:
        return server.add_release(
            repo,
            "latest",
            {name: release_dir / name for name in names},
            name="Latest availability data (SYNTHETIC sample, rolling)",
            body=SYNTHETIC_NOTE,
            with_digest=with_digest,
        )


class SampleReleases:
    """Build-once cache of sample releases, so each test publishes without rebuilding.

    Parameters
    ----------
    root
        Folder holding the built releases.
    n_symbols
        Symbols in the synthetic universe.
    history
        Publish an observation history with re-uploads (:func:`with_history`: exact
        ``first_seen``, a few files replaced after their upload) in the dated releases,
        as the demo does; False (the tests' samples): the history a release built from a
        table alone has, one inexact ``appeared`` event per file.
    """

    def __init__(self, root: Path, *, n_symbols: int = 60, history: bool = False) -> None:
        self.root = Path(root)
        self.n_symbols = n_symbols
        self.history = history
        self._tables: dict[dt.date, Any] = {}

    def _inputs(self, end: dt.date) -> tuple[Any, Any]:
        """The table and history (None without ``history``) up to ``end`` (memoised)."""
        if end not in self._tables:
            table = sample_table(end, n_symbols=self.n_symbols)
            self._tables[end] = with_history(table) if self.history else (table, None)
        return self._tables[end]

    def table(self, end: dt.date):
        """The synthetic table covering 2019-12-31..``end`` (memoised)."""
        return self._inputs(end)[0]

    def dated(self, version: str) -> Path:
        """Built release for ``version`` (coverage ends the day before)."""
        out = self.root / f"data-{version}"
        if not (out / "manifest.json").exists():
            end = dt.date.fromisoformat(version) - dt.timedelta(days=1)
            table, events = self._inputs(end)
            build_dated(table, out, version, events=events)
        return out

    def rolling(self, end: dt.date) -> Path:
        """Built rolling-layout release covering up to ``end``."""
        out = self.root / f"rolling-{end.isoformat()}"
        if not (out / "availability.duckdb.gz").exists():
            build_rolling(self.table(end), out)
        return out

    def publish(
        self, server: ReleaseServer, repo: str = SAMPLE_REPO, versions: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Build (if needed) and publish dated releases for ``versions``."""
        return [publish_dated(server, repo, self.dated(v)) for v in versions]
