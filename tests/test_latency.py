"""When data appears: ``Query.latency``/``latency_summary``, ``bfa latency`` and its chart,
from a collected state (moto's S3 server shaped like Binance Vision), a constructed release
with known upload times, and the demo data (whose history has exact uploads and re-uploads).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from intake_bfa.demo import write_demo_releases
from intake_bfa.errors import QueryError
from intake_bfa.producer.release import build_from_state
from intake_bfa.query import Query
from intake_bfa.testing.releases import build_dated
from intake_bfa.testing.synthetic import generate_daily_availability

from .conftest import run_cli
from .test_collect import Vision, days, m1_key
from .test_observation_history import BACKFILLED, T1, T2, WINDOW, s3_object, seed

D = dt.date
REPLACED = ("BBBUSDT", D(2024, 3, 10))
HOUR = dt.timedelta(hours=1)


def end_of(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time())


def test_latency_of_a_collected_state_is_the_seen_upload_time(moto_endpoint, tmp_path, monkeypatch):
    bucket = Vision(moto_endpoint, "latency")
    symbols = {"AAAUSDT": days(*WINDOW), "BBBUSDT": days(*WINDOW)}
    seed(bucket, symbols)
    state_dir = tmp_path / "state"
    bucket.run(state_dir, today=T1, full_every=0)
    uploaded = {
        (s, d): s3_object(bucket, s, d)["last_modified"]
        for s, ds in symbols.items()
        for d in ds
        if (s, d) != BACKFILLED
    }
    # S3's Last-Modified has a resolution of one second: upload the changes in a later one.
    time.sleep(1.1)
    bucket.put(
        {
            m1_key(*BACKFILLED): b"back-filled weeks later",
            m1_key(*REPLACED): b"replaced in place, longer than before",
        }
    )
    bucket.run(state_dir, today=T2, full_every=0)
    uploaded[BACKFILLED] = s3_object(bucket, *BACKFILLED)["last_modified"]
    replaced_at = s3_object(bucket, *REPLACED)["last_modified"]
    result = build_from_state(state_dir, tmp_path / "src" / "data-2024-03-15", version="2024-03-15")
    assert result.report.ok, [f.message for f in result.report.findings]
    monkeypatch.setenv("BFA_SOURCE", str(tmp_path / "src"))

    with Query() as q:
        rows = q.latency()
        assert list(rows.columns) == [
            "symbol", "date", "first_seen", "first_seen_exact", "delay_hours"
        ]  # fmt: skip
        got = {(r.symbol, pd.Timestamp(r.date).date()): r for r in rows.itertuples()}
        assert set(got) == set(uploaded)
        for k, seen in uploaded.items():
            # first_seen is the first upload (not the replacement), to the microsecond.
            assert got[k].first_seen.to_pydatetime() == seen, k
            assert got[k].delay_hours == pytest.approx((seen - end_of(k[1])) / HOUR, abs=1e-9)
        assert replaced_at > uploaded[REPLACED]
        assert got[BACKFILLED].first_seen_exact  # seen arriving between two runs
        only = q.latency(symbols=["aaausdt"], start="2024-03-01", end="2024-03-05")
        assert set(only["symbol"]) == {"AAAUSDT"} and len(only) == 5
        summary = q.latency_summary()
        exact = int(rows["first_seen_exact"].sum())
        assert summary["files"][0] == len(uploaded) and summary["exact_files"][0] == exact
        delays = np.array([(seen - end_of(k[1])) / HOUR for k, seen in uploaded.items()])
        assert summary["p50_hours"][0] == pytest.approx(np.percentile(delays, 50))
        assert summary["max_hours"][0] == pytest.approx(delays.max())
        strict = q.latency_summary(exact_only=True)
        assert strict["files"][0] == strict["exact_files"][0] == exact
        assert strict["p50_hours"][0] == pytest.approx(got[BACKFILLED].delay_hours)


# Delays (hours after the end of the file's day) given to the constructed release, in turn.
DELAYS = [8.5, 8.6, 8.7, 8.75, 8.8, 8.9, 9.0, 12.0, 30.0, 200.0]


@pytest.fixture
def constructed(tmp_path, monkeypatch):
    """A release whose available rows were uploaded DELAYS[i % 10] hours after their day."""
    table = generate_daily_availability(n_symbols=40, start=D(2021, 1, 1), end=D(2021, 1, 10))
    available = table.column("available").to_numpy(zero_copy_only=False)
    dates = table.column("date").to_pylist()
    delays, modified, k = [], [], 0
    for day, up in zip(dates, available, strict=True):
        if up:
            delays.append(DELAYS[k % len(DELAYS)])
            modified.append(end_of(day) + delays[-1] * HOUR)
            k += 1
        else:
            modified.append(None)
    i = table.schema.get_field_index("last_modified")
    table = table.set_column(i, table.schema.field(i), pa.array(modified, pa.timestamp("us")))
    build_dated(table, tmp_path / "src" / "data-2021-01-11", "2021-01-11")
    monkeypatch.setenv("BFA_SOURCE", str(tmp_path / "src"))
    return np.array(delays)


def there_by(hours: float) -> str:
    minutes = math.ceil(hours * 60)
    day, rest = divmod(minutes, 1440)
    return f"D+{day + 1} {rest // 60:02d}:{rest % 60:02d} UTC"


def test_latency_summary_percentiles_on_a_constructed_release(constructed):
    with Query() as q:
        s = q.latency_summary().iloc[0]
        assert s["files"] == len(constructed) and s["exact_files"] == 0  # built from a table
        for p in (50, 90, 95, 99):
            expected = np.percentile(constructed, p)
            assert s[f"p{p}_hours"] == pytest.approx(expected), p
            assert s[f"p{p}_by"] == there_by(expected), p
        assert s["max_hours"] == pytest.approx(200.0)
        assert s["late_1d_pct"] == pytest.approx(100 * np.mean(constructed > 24))
        assert s["late_7d_pct"] == pytest.approx(100 * np.mean(constructed > 168))
        # No exact first_seen: the exact-only summary counts nothing.
        none = q.latency_summary(exact_only=True).iloc[0]
        assert none["files"] == 0 and math.isnan(none["p50_hours"]) and none["p50_by"] is None
        per_day = q.latency_summary(by="date")
        assert [pd.Timestamp(d).date() for d in per_day["date"]] == [
            D(2021, 1, d) for d in range(1, 11)
        ]
        assert per_day["files"].sum() == len(constructed)
        per_symbol = q.latency_summary("2021-01-03", "2021-01-04", by="symbol")
        assert per_symbol.columns[0] == "symbol" and per_symbol["symbol"].is_monotonic_increasing
        with pytest.raises(QueryError, match="by must be one of"):
            q.latency_summary(by="month")
        with pytest.raises(QueryError, match="outside the coverage"):
            q.latency("2020-01-01")
    assert there_by(8.75) == "D+1 08:45 UTC" and there_by(30.01) == "D+2 06:01 UTC"


def test_bfa_latency_table_json_and_plot(constructed, tmp_path):
    table = run_cli("latency")
    assert table.returncode == 0, table.stderr
    assert "p50_by" in table.stdout and there_by(np.percentile(constructed, 50)) in table.stdout
    out = run_cli("latency", "--json", "--by", "date", "--symbol", "BTCUSDT", "ethusdt")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["date"] for r in rows] == [f"2021-01-{d:02d}" for d in range(1, 11)]
    assert all(r["files"] == 2 for r in rows)
    files = run_cli("latency", "--rows", "--format", "csv", "--start", "2021-01-10")
    assert files.returncode == 0 and files.stdout.startswith('"symbol","date","first_seen"')
    png = tmp_path / "latency.png"
    drawn = run_cli("latency", "--plot", str(png), "--exact-only", "--json")
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in drawn.stderr
    png2 = tmp_path / "plot.png"
    plotted = run_cli("plot", "latency", "--symbol", "BTCUSDT", "--output", str(png2))
    assert plotted.returncode == 0 and png2.read_bytes()[:4] == b"\x89PNG"
    assert run_cli("latency", "--plot", str(tmp_path / "x.gif")).returncode == 2
    assert run_cli("latency", "--rows", "--by", "date").returncode == 2


def test_bfa_latency_on_the_demo_data(tmp_path):
    folder = write_demo_releases(tmp_path / "demo", symbols=40)
    env = {"BFA_SOURCE": str(folder)}
    out = run_cli("latency", "--json", env=env)
    assert out.returncode == 0, out.stderr
    (s,) = json.loads(out.stdout)
    # Uploads at 08:30-08:45 UTC the next day, every one seen arriving (exact), a few
    # back-filled weeks later.
    assert s["files"] == s["exact_files"] > 10_000
    assert s["p50_by"] == "D+1 08:38 UTC" and s["p95_by"] == "D+1 08:45 UTC"
    assert 0 < s["late_7d_pct"] < 1
    # A re-upload moves last_modified, not first_seen.
    replaced = run_cli(
        "sql",
        "SELECT count(*) AS n, bool_and(d.first_seen < d.last_modified) AS ok "
        "FROM availability_events e JOIN daily_availability d USING (symbol, date) "
        "WHERE e.event = 'replaced'",
        "--json",
        env=env,
    )
    (r,) = json.loads(replaced.stdout)
    assert r["n"] > 0 and r["ok"]
