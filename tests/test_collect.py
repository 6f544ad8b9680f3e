"""``bfa collect`` against a real S3 implementation shaped like Binance Vision.

A moto server (127.0.0.1, port 0) holds buckets seeded with boto3: symbol folders with
1m klines zips and their ``.CHECKSUM`` siblings, one symbol long enough to cross a
1000-key page, the naming quirks (non-ASCII, settled, dated quarterly), and 1d klines
(monthly and daily, with and without a header row, ms and µs open times). Failures are
real HTTP answers from a small proxy in front of moto. Nothing of intake_bfa is mocked.
"""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import shutil
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

# moto and boto3 come with the dev extra: a missing install must fail, never skip.
import boto3
import pytest

from intake_bfa.errors import CollectError, ConfigError
from intake_bfa.producer.collect import collect, due_for_full_listing
from intake_bfa.producer.s3 import S3Client, parse_listing
from intake_bfa.producer.state import load_state

D = dt.date
T1, T2 = D(2024, 3, 14), D(2024, 3, 15)  # run dates: data up to the day before
ROOT = "data/futures/um/daily/klines/"
SHORT = (D(2024, 2, 15), D(2024, 3, 13))
SYMBOLS = {
    # 530 days -> 1060 keys with the .CHECKSUM siblings: crosses a 1000-key page.
    "BTCUSDT": (D(2022, 10, 1), D(2024, 3, 13)),
    "ETHUSDT": SHORT,
    "1000PEPEUSDT": SHORT,
    "币安人生USDT": SHORT,
    "0GUSDT": SHORT,
    "AUSDT": SHORT,
    "ETHBTC": SHORT,
    "BTCDOMUSDT": SHORT,
    "1MBABYDOGEUSDT": SHORT,
    "BTCUSDC": SHORT,
    "BNXUSDTSETTLED": (D(2024, 1, 20), D(2024, 2, 20)),
    "ICPUSDT_SETTLED": (D(2024, 1, 25), D(2024, 2, 25)),
    "BTCUSDT_240329": (D(2024, 2, 20), D(2024, 3, 13)),
}
MISSING = {("ETHUSDT", D(2024, 3, 5))}  # back-filled later
STRAYS = [
    "BTCUSDT-1m-2019-12-30.zip",
    "BTCUSDT-1m-latest.zip",
    "README.txt",
    "BTCUSDT-1m-2024-02-30.zip",
]
VOLUME_SYMBOLS = ("BTCUSDT", "币安人生USDT", "ETHUSDT")


def days(first: dt.date, last: dt.date):
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def m1_key(symbol: str, day: dt.date) -> str:
    return f"{ROOT}{symbol}/1m/{symbol}-1m-{day}.zip"


def kline(symbol: str, day: dt.date, bump: int = 0) -> dict[str, float]:
    base = day.toordinal() % 97 + len(symbol) + bump
    return {
        "open": 10.0 + base,
        "high": 12.5 + base,
        "low": 9.25 + base,
        "close": 11.0 + base,
        "volume": 1000.0 + base,
        "quote_volume": 5000.5 + base,
        "count": 300 + base,
        "taker_buy_volume": 400.0 + base,
        "taker_buy_quote_volume": 2000.25 + base,
    }


def kline_zip(symbol: str, name: str, rows: list[dt.date], *, header: bool, micros: bool, bump=0):
    lines = []
    if header:
        lines.append(
            "open_time,open,high,low,close,volume,close_time,quote_volume,count,"
            "taker_buy_volume,taker_buy_quote_volume,ignore"
        )
    for day in rows:
        k, ms = kline(symbol, day, bump), (day - D(1970, 1, 1)).days * 86_400_000
        scale = 1000 if micros else 1
        lines.append(
            f"{ms * scale},{k['open']},{k['high']},{k['low']},{k['close']},{k['volume']},"
            f"{(ms + 86_399_999) * scale},{k['quote_volume']},{k['count']},"
            f"{k['taker_buy_volume']},{k['taker_buy_quote_volume']},0"
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{name}.csv", "\n".join(lines) + "\n")
    return buf.getvalue()


def daily_1d(symbol: str, day: dt.date, bump: int = 0) -> tuple[str, bytes]:
    # Older daily files have no header; newer ones (from 03-10 here) use µs open times.
    body = kline_zip(
        symbol,
        f"{symbol}-1d-{day}",
        [day],
        header=day >= D(2024, 3, 4),
        micros=day >= D(2024, 3, 10),
        bump=bump,
    )
    return f"{ROOT}{symbol}/1d/{symbol}-1d-{day}.zip", body


def monthly_1d(symbol: str, month: dt.date) -> tuple[str, bytes]:
    end = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)
    name = f"{symbol}-1d-{month:%Y-%m}"
    body = kline_zip(symbol, name, days(month, end), header=month >= D(2024, 2, 1), micros=False)
    return f"data/futures/um/monthly/klines/{symbol}/1d/{name}.zip", body


def base_objects() -> dict[str, bytes]:
    objects: dict[str, bytes] = {}
    for symbol, (first, last) in SYMBOLS.items():
        for day in days(first, last):
            if (symbol, day) in MISSING:
                continue
            key = m1_key(symbol, day)
            objects[key] = f"1m klines {symbol} {day}".encode()
            objects[key + ".CHECKSUM"] = b"0" * 64 + key.encode()
    for stray in STRAYS:
        objects[f"{ROOT}BTCUSDT/1m/{stray}"] = b"stray"
    for symbol in VOLUME_SYMBOLS:
        first, last = SYMBOLS[symbol]
        for day in days(max(first, D(2024, 2, 20)), last):
            if (symbol, day) not in MISSING:
                key, body = daily_1d(symbol, day)
                objects[key] = body
        if symbol == "BTCUSDT":
            for month in (D(2024, 1, 1), D(2024, 2, 1)):
                key, body = monthly_1d(symbol, month)
                objects[key] = body
    return objects


class Vision:
    """One bucket on the shared moto server, seeded and changed through boto3."""

    def __init__(self, endpoint: str, name: str):
        self.endpoint, self.name = endpoint, name
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        self.s3.create_bucket(Bucket=name)
        # Binance Vision's objects are public: anonymous GETs must work.
        public = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
        policy = {
            "Version": "2012-10-17",
            "Statement": [public | {"Resource": f"arn:aws:s3:::{name}/*"}],
        }
        self.s3.put_bucket_policy(Bucket=name, Policy=json.dumps(policy))

    @property
    def data_url(self) -> str:
        return f"{self.endpoint}/{self.name}"

    def put(self, objects: dict[str, bytes]) -> None:
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda kv: self.s3.put_object(Bucket=self.name, Key=kv[0], Body=kv[1]),
                    objects.items(),
                )
            )

    def delete(self, *keys: str) -> None:
        for key in keys:
            self.s3.delete_object(Bucket=self.name, Key=key)

    def head(self, key: str) -> dict:
        return self.s3.head_object(Bucket=self.name, Key=key)

    def run(self, state_dir, **kw):
        kw.setdefault("endpoint", self.endpoint)
        return collect(state_dir, bucket=self.name, data_url=self.data_url, **kw)


@pytest.fixture(scope="module")
def vision(moto_endpoint) -> Vision:
    """The read-only base bucket (tests must not change it)."""
    bucket = Vision(moto_endpoint, "vision-base")
    bucket.put(base_objects())
    return bucket


@pytest.fixture(scope="module")
def base_state(vision, tmp_path_factory) -> Path:
    """State after a first (volume) run on ``vision`` at T1."""
    folder = tmp_path_factory.mktemp("base-state")
    vision.run(folder, volume=True, today=T1)
    return folder


def copy_state(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def rows(folder: Path, table: str = "availability", drop=("probe_timestamp",)) -> list[dict]:
    t = getattr(load_state(folder), table)
    t = t.drop_columns([c for c in drop if c in t.column_names])
    return t.sort_by([("symbol", "ascending"), ("date", "ascending")]).to_pylist()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


class FaultProxy:
    """HTTP proxy on 127.0.0.1 in front of moto that answers chosen requests itself."""

    def __init__(self, upstream: str):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rules: list[list] = []  # [match(params) -> bool, remaining (None = always), status]
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):
                params = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                status = proxy._fault(params)
                if status:
                    body = f"<Error><Code>Injected{status}</Code></Error>".encode()
                    self.send_response(status)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                conn.request("GET", self.path, headers={"Host": "{}:{}".format(*proxy.upstream)})
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                self.send_response(resp.status)
                for name in ("Content-Type", "ETag", "Last-Modified"):
                    if resp.getheader(name):
                        self.send_header(name, resp.getheader(name))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _fault(self, params: dict[str, str]) -> int | None:
        with self.lock:
            for rule in self.rules:
                match, remaining, status = rule
                if match(params) and remaining != 0:
                    rule[1] = None if remaining is None else remaining - 1
                    return status
        return None

    def fail_prefix(self, symbol: str, status: int = 503, times: int | None = None) -> None:
        prefix = f"{ROOT}{symbol}/1m/"
        self.rules.append([lambda p: p.get("prefix") == prefix, times, status])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


# -- listing ---------------------------------------------------------------------------


def test_full_listing_quirky_names_and_page_boundary(vision, tmp_path):
    report = vision.run(tmp_path / "s", full=True, today=T1)
    state = load_state(tmp_path / "s")
    assert sorted(state.symbols) == sorted(SYMBOLS)
    by_symbol = {}
    for row in state.availability.to_pylist():
        by_symbol.setdefault(row["symbol"], []).append(row["date"])
    for symbol, (first, last) in SYMBOLS.items():
        expected = [d for d in days(first, last) if (symbol, d) not in MISSING]
        assert sorted(by_symbol[symbol]) == expected, symbol
    # 1060 + 4 stray keys in BTCUSDT: two pages; every other symbol: one.
    assert report.requests == {"discover": 1, "list": len(SYMBOLS) + 1}
    assert report.keys_seen == sum(2 * len(v) for v in by_symbol.values()) + len(STRAYS)
    assert report.rows_added == state.availability.num_rows
    assert report.symbols_new == len(SYMBOLS)  # new to the (empty) state
    assert report.symbols_failed == {} and report.saved
    # Size, ETag and Last-Modified are what S3 says (naive UTC, ETag without quotes).
    for symbol in ("币安人生USDT", "BTCUSDT_240329", "ICPUSDT_SETTLED", "BNXUSDTSETTLED"):
        row = next(r for r in state.availability.to_pylist() if r["symbol"] == symbol)
        head = vision.head(m1_key(symbol, row["date"]))
        assert row["file_size_bytes"] == head["ContentLength"]
        assert row["etag"] == head["ETag"].strip('"')
        assert row["last_modified"] == head["LastModified"].astimezone(dt.UTC).replace(tzinfo=None)
    stamps = state.availability["probe_timestamp"].to_pylist()
    started = dt.datetime.fromisoformat(report.started).replace(tzinfo=None)
    assert all(started <= s <= dt.datetime.now(dt.UTC).replace(tzinfo=None) for s in stamps)
    assert state.runs[-1]["requests"] == report.requests


@pytest.mark.slow  # 1003 symbols listed one by one against moto: ~15 s
def test_discovery_crosses_a_page_boundary(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "vision-many")
    names = [f"S{i:04d}USDT" for i in range(1002)] + ["币安人生USDT"]
    bucket.put({m1_key(n, D(2024, 3, 1)): b"z" for n in names})
    client = S3Client(moto_endpoint, bucket.name, bucket.data_url)
    from intake_bfa.producer.collect import discover

    assert discover(client) == names
    assert client.requests == {"discover": 2}
    report = bucket.run(tmp_path / "s", today=D(2024, 3, 2))
    assert report.symbols_discovered == len(names) == report.symbols_listed
    assert report.requests == {"discover": 2, "list": len(names)}
    assert load_state(tmp_path / "s").availability.num_rows == len(names)


def test_incremental_run_costs_one_request_per_symbol(vision, base_state, tmp_path):
    state_dir = copy_state(base_state, tmp_path / "s")
    report = vision.run(state_dir, today=T1)
    assert report.requests == {"discover": 1, "list": len(SYMBOLS)}
    assert (report.rows_added, report.rows_removed, report.rows_changed) == (0, 0, 0)
    assert rows(state_dir) == rows(base_state)


@pytest.mark.slow  # two collects and two builds over a churned bucket: ~17 s
def test_incremental_equals_full_rebuild(moto_endpoint, tmp_path):
    bucket = Vision(moto_endpoint, "vision-changes")
    bucket.put(base_objects())
    state_dir = tmp_path / "incremental"
    bucket.run(state_dir, volume=True, today=T1)
    before = {(r["symbol"], r["date"]): r for r in rows(state_dir)}

    # A day later: a new day for live symbols, a late back-fill, a replaced object,
    # a vanished one, and a re-published 1d file with new numbers.
    new_day = D(2024, 3, 14)
    changes = {
        m1_key(s, new_day): b"new day" for s, (_, last) in SYMBOLS.items() if last == D(2024, 3, 13)
    }
    changes[m1_key("ETHUSDT", D(2024, 3, 5))] = b"back-filled weeks later"
    changes.update(dict([daily_1d("ETHUSDT", D(2024, 3, 5))]))
    changes[m1_key("1000PEPEUSDT", D(2024, 3, 10))] = b"replaced in place, longer than before"
    changes.update(dict([daily_1d("BTCUSDT", D(2024, 3, 9), bump=500)]))
    for symbol in VOLUME_SYMBOLS:
        changes.update(dict([daily_1d(symbol, new_day)]))
    bucket.put(changes)
    bucket.delete(m1_key("AUSDT", D(2024, 3, 8)))

    report = bucket.run(state_dir, volume=True, today=T2)
    assert report.requests["discover"] == 1 and report.requests["list"] == len(SYMBOLS)
    assert report.rows_removed == 1 and report.rows_changed == 1
    assert report.rows_added == 1 + sum(1 for s in SYMBOLS.values() if s[1] == D(2024, 3, 13))
    full_dir = tmp_path / "full"
    bucket.run(full_dir, full=True, volume=True, today=T2)

    assert rows(state_dir) == rows(full_dir)
    after = {(r["symbol"], r["date"]): r for r in rows(state_dir)}
    assert ("ETHUSDT", D(2024, 3, 5)) in after and ("ETHUSDT", D(2024, 3, 5)) not in before
    assert ("AUSDT", D(2024, 3, 8)) in before and ("AUSDT", D(2024, 3, 8)) not in after
    old, new = before[("1000PEPEUSDT", D(2024, 3, 10))], after[("1000PEPEUSDT", D(2024, 3, 10))]
    assert new["file_size_bytes"] != old["file_size_bytes"] and new["etag"] != old["etag"]
    assert new["last_modified"] >= old["last_modified"]

    # Volume: equal on every available day; the vanished day keeps its (placeholder)
    # row, which the published grid never shows (volume is never erased).
    available = set(after)
    inc_volume = [r for r in rows(state_dir, "volume", ()) if (r["symbol"], r["date"]) in available]
    assert inc_volume == rows(full_dir, "volume", ())
    extra = {(r["symbol"], r["date"]) for r in rows(state_dir, "volume", ())} - available
    assert extra == {("AUSDT", D(2024, 3, 8))}
    btc = {r["date"]: r for r in rows(state_dir, "volume", ()) if r["symbol"] == "BTCUSDT"}
    assert (
        btc[D(2024, 3, 9)]["quote_volume_usdt"]
        == kline("BTCUSDT", D(2024, 3, 9), 500)["quote_volume"]
    )
    eth = {r["date"]: r for r in rows(state_dir, "volume", ()) if r["symbol"] == "ETHUSDT"}
    assert eth[D(2024, 3, 5)]["trade_count"] == kline("ETHUSDT", D(2024, 3, 5))["count"]


@pytest.mark.slow  # eight daily collects against moto: ~12 s
def test_rotation_publishes_an_old_change_within_a_week(moto_endpoint, tmp_path):
    """Changes before the re-check window: one slice of symbols is listed whole per run."""
    bucket = Vision(moto_endpoint, "vision-rotation")
    # A small bucket (seeding costs ~2 ms an object): BTCUSDT's 1m files since 2022-10-20
    # (1000+ keys: two pages) and two short symbols.
    listed = {"BTCUSDT": (D(2022, 10, 20), D(2024, 3, 13)), "ETHUSDT": SHORT, "AUSDT": SHORT}
    objects = {}
    for symbol, (first, last) in listed.items():
        for day in days(first, last):
            key = m1_key(symbol, day)
            objects[key] = f"1m klines {symbol} {day}".encode()
            objects[key + ".CHECKSUM"] = b"0" * 64 + key.encode()
    bucket.put(objects)
    state_dir = tmp_path / "s"
    bucket.run(state_dir, today=T1, full_every=0)
    before = {(r["symbol"], r["date"]): r for r in rows(state_dir)}
    assert {s for s, _ in before} == set(listed)
    # Months before BTCUSDT's 20-day window: a file replaced and one that vanished.
    replaced, vanished = D(2023, 1, 10), D(2023, 2, 1)
    bucket.put({m1_key("BTCUSDT", replaced): b"replaced a year later, longer than before"})
    bucket.delete(m1_key("BTCUSDT", vanished))
    assert ("BTCUSDT", vanished) in before and ("BTCUSDT", replaced) in before

    # Without the rotation a daily run never sees it (the window never reaches 2023).
    blind = copy_state(state_dir, tmp_path / "blind")
    bucket.run(blind, today=T1, full_every=0)
    assert {(r["symbol"], r["date"]): r for r in rows(blind)} == before

    # With it: every symbol has exactly one day in any 7 consecutive days, and BTCUSDT's
    # change is seen on its day, not the day before (the other symbols cost what they did).
    week = [T1 + dt.timedelta(days=i) for i in range(7)]
    for symbol in SYMBOLS:
        assert sum(due_for_full_listing(symbol, d, 7) for d in week) == 1, symbol
    slot = next(d for d in week if due_for_full_listing("BTCUSDT", d, 7))
    day_before = slot - dt.timedelta(days=1)
    assert not due_for_full_listing("BTCUSDT", day_before, 7)
    bucket.run(state_dir, today=day_before)
    assert ("BTCUSDT", vanished) in {(r["symbol"], r["date"]) for r in rows(state_dir)}
    report = bucket.run(state_dir, today=slot)
    now = {(r["symbol"], r["date"]): r for r in rows(state_dir)}
    assert ("BTCUSDT", vanished) not in now
    assert report.rows_removed == 1 and report.rows_changed == 1
    assert report.requests["list"] == len(listed) + 1  # BTCUSDT's second page
    full = tmp_path / "full"
    bucket.run(full, full=True, today=slot)
    assert rows(state_dir) == rows(full)


# -- failures ---------------------------------------------------------------------------


def test_503_is_retried_and_succeeds(vision, base_state, tmp_path, monkeypatch):
    monkeypatch.setenv("BFA_RETRIES", "4")
    with FaultProxy(vision.endpoint) as proxy:
        proxy.fail_prefix("ETHUSDT", 503, times=2)
        proxy.fail_prefix("币安人生USDT", 500, times=1)
        report = vision.run(
            copy_state(base_state, tmp_path / "s"), endpoint=proxy.endpoint, today=T1
        )
    assert report.symbols_failed == {} and report.saved
    assert report.retries == {"list": 3}
    assert report.requests == {"discover": 1, "list": len(SYMBOLS) + 3}
    assert rows(tmp_path / "s") == rows(base_state)


def test_failure_rate_above_threshold_saves_nothing(vision, base_state, tmp_path, monkeypatch):
    monkeypatch.setenv("BFA_RETRIES", "2")
    state_dir = copy_state(base_state, tmp_path / "s")
    before = snapshot(state_dir)
    with FaultProxy(vision.endpoint) as proxy:
        proxy.fail_prefix("ETHUSDT")
        proxy.fail_prefix("BTCUSDT")
        with pytest.raises(CollectError, match="2 of 13 symbols failed") as info:
            vision.run(state_dir, endpoint=proxy.endpoint, today=T1)
    report = info.value.report
    assert set(report.symbols_failed) == {"ETHUSDT", "BTCUSDT"} and not report.saved
    assert "503" in report.symbols_failed["ETHUSDT"]
    assert snapshot(state_dir) == before


def test_one_failing_symbol_keeps_its_rows(vision, base_state, tmp_path, monkeypatch):
    monkeypatch.setenv("BFA_RETRIES", "2")
    state_dir = copy_state(base_state, tmp_path / "s")
    with FaultProxy(vision.endpoint) as proxy:
        proxy.fail_prefix("1000PEPEUSDT", 503)
        report = vision.run(state_dir, endpoint=proxy.endpoint, error_threshold=0.1, today=T1)
    assert list(report.symbols_failed) == ["1000PEPEUSDT"] and report.saved
    old = rows(base_state, drop=())
    new = rows(state_dir, drop=())
    assert [r for r in new if r["symbol"] == "1000PEPEUSDT"] == [
        r for r in old if r["symbol"] == "1000PEPEUSDT"
    ]
    fresh = [r for r in new if r["symbol"] == "ETHUSDT" and r["date"] >= D(2024, 2, 22)]
    assert all(r["probe_timestamp"] > max(o["probe_timestamp"] for o in old) for r in fresh)
    assert load_state(state_dir).runs[-1]["symbols_failed"] == report.symbols_failed


def test_v1_fallback_when_v2_is_rejected(vision, base_state, tmp_path):
    with FaultProxy(vision.endpoint) as proxy:
        proxy.rules.append([lambda p: p.get("list-type") == "2", None, 400])
        report = vision.run(tmp_path / "s", endpoint=proxy.endpoint, full=True, today=T1)
    assert rows(tmp_path / "s") == rows(base_state)
    assert report.symbols_failed == {}


# -- volume -----------------------------------------------------------------------------


def test_volume_from_monthly_and_daily_files(base_state):
    state = load_state(base_state)
    volume = {(r["symbol"], r["date"]): r for r in state.volume.to_pylist()}
    cases = {
        D(2024, 1, 15): "monthly:",  # monthly, no header, ms
        D(2024, 2, 25): "monthly:",  # monthly with header (the daily file exists too)
        D(2024, 3, 2): "daily:",  # daily, no header
        D(2024, 3, 6): "daily:",  # daily with header
        D(2024, 3, 11): "daily:",  # daily with header, µs open_time
    }
    for day, source in cases.items():
        row, k = volume[("BTCUSDT", day)], kline("BTCUSDT", day)
        assert row["source"].startswith(source), day
        assert row["quote_volume_usdt"] == k["quote_volume"] and row["trade_count"] == k["count"]
        assert (
            row["volume_base"] == k["volume"]
            and row["taker_buy_volume_base"] == k["taker_buy_volume"]
        )
        assert row["taker_buy_quote_volume_usdt"] == k["taker_buy_quote_volume"]
        assert (row["open_price"], row["high_price"], row["low_price"], row["close_price"]) == (
            k["open"],
            k["high"],
            k["low"],
            k["close"],
        )
    assert (
        volume[("币安人生USDT", D(2024, 3, 12))]["close_price"]
        == kline("币安人生USDT", D(2024, 3, 12))["close"]
    )
    # Days without a kline file get a placeholder: no numbers, and no second fetch.
    assert volume[("BTCUSDT", D(2023, 6, 1))]["source"] == "absent"
    assert volume[("BTCUSDT", D(2023, 6, 1))]["quote_volume_usdt"] is None
    # BTCUSDT: 2 monthly + 13 March dailies; the others have no monthly files, so their
    # February days come from dailies too: 币安人生USDT 10 + 13, ETHUSDT 10 + 12.
    assert state.runs[-1]["requests"]["volume_get"] == 15 + 23 + 22


def test_rerun_is_cheap_and_recheck_never_erases_volume(vision, base_state, tmp_path):
    state_dir = copy_state(base_state, tmp_path / "s")
    report = vision.run(state_dir, volume=True, today=T1)
    assert "volume_get" not in report.requests  # everything is up to date
    assert report.requests["volume_list"] <= 2 * len(SYMBOLS)
    vision.run(state_dir, full=True, today=T1)  # availability only, every day re-listed
    vision.run(state_dir, today=T1)
    assert rows(state_dir, "volume", ()) == rows(base_state, "volume", ())


# -- configuration and parsing -------------------------------------------------------


def test_bad_endpoint_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BFA_S3_ENDPOINT", "ftp://example.com")
    with pytest.raises(ConfigError, match="BFA_S3_ENDPOINT"):
        collect(tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_parse_listing_without_namespace_and_plus_encoding():
    body = b"""<?xml version="1.0"?><ListBucketResult><Name>b</Name><EncodingType>url</EncodingType>
    <IsTruncated>true</IsTruncated><NextMarker>a%2Bb+c</NextMarker>
    <Contents><Key>x/%E5%B8%81+1.zip</Key><LastModified>2024-03-01T08:31:07.000Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>
    <CommonPrefixes><Prefix>x/%E5%B8%81/</Prefix></CommonPrefixes></ListBucketResult>"""
    page = parse_listing(body, dt.datetime(2024, 3, 2))
    (obj,) = page.objects
    assert obj.key == "x/币 1.zip" and obj.etag == "abc" and obj.size == 12
    assert obj.last_modified == dt.datetime(2024, 3, 1, 8, 31, 7)
    assert page.prefixes == ["x/币/"] and page.truncated and page.next_marker == "a+b c"
    assert not page.is_v2


def test_botocore_failures_become_typed_errors():
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

    from intake_bfa.errors import DownloadError, RateLimitError
    from intake_bfa.producer.s3 import _listing_error

    def client_error(status: int, code: str, **headers: str) -> ClientError:
        meta = {"HTTPStatusCode": status, "HTTPHeaders": headers}
        return ClientError({"Error": {"Code": code}, "ResponseMetadata": meta}, "ListObjectsV2")

    url = "http://127.0.0.1:1/b"
    slow = _listing_error(client_error(503, "SlowDown", **{"retry-after": "3"}), url, "'x/'")
    assert isinstance(slow, RateLimitError) and slow.context == {
        "url": url,
        "status": 503,
        "reset": None,
        "retry_after": "3",
        "retryable": True,
    }
    for status, retryable in ((500, True), (429, True), (403, False), (400, False)):
        err = _listing_error(client_error(status, "Boom"), url, "'x/'")
        assert isinstance(err, DownloadError) and str(status) in str(err)
        assert (err.status, err.retryable, err.url) == (status, retryable, url)
    refused = OSError("new connection")
    refused.__cause__ = ConnectionRefusedError()
    err = _listing_error(EndpointConnectionError(endpoint_url=url, error=refused), url, "'x/'")
    assert (err.status, err.retryable) == (None, False)
    err = _listing_error(ReadTimeoutError(endpoint_url=url, error=TimeoutError()), url, "'x/'")
    assert (err.status, err.retryable) == (None, True)
    assert _listing_error(KeyError("not botocore's"), url, "'x/'") is None


def test_missing_botocore_names_the_extra(monkeypatch):
    from intake_bfa.errors import MissingDependencyError

    for name in ("botocore", "botocore.config", "botocore.session"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'intake-bfa\[producer\]'"):
        S3Client("http://127.0.0.1:1", "b", "http://127.0.0.1:1/b")
