"""The observation history carried from release to release, end to end through the CLI.

moto bucket -> ``bfa collect`` -> ``bfa build`` -> ``bfa publish`` (release 1) -> a late
back-fill, a replacement and a deletion -> ``bfa collect --base latest`` into a fresh
state (seeded from release 1: its history comes along) -> release 2 -> as-of queries.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import pyarrow.parquet as pq
import pytest

from intake_bfa.producer.state import load_state
from intake_bfa.testing.server import ReleaseServer

from .conftest import run_cli
from .test_as_of import pause, stamp
from .test_collect import Vision, days, m1_key
from .test_observation_history import s3_object, seed, utc_now

TOKEN = "ghp_historytoken00000000000"
REPO = "bfa/history-e2e"
KEY = ["symbol", "date", "event", "observed_at", "event_time"]


def cli(*args: str, env: dict[str, str]) -> str:
    out = run_cli(*args, env=env)
    assert out.returncode == 0, out.stderr
    return out.stdout


def rows(stdout: str) -> dict[tuple[str, str], dict]:
    """``--format json`` rows by (symbol, date)."""
    return {(r["symbol"], str(r["date"])[:10]): r for r in json.loads(stdout)}


def history(release) -> list[dict]:
    table = pq.read_table(release / "availability_events.parquet")
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in KEY))


@pytest.mark.slow  # collect, build and publish twice through the CLI: ~7 s
def test_history_is_carried_from_release_to_release(moto_endpoint, tmp_path):
    today = utc_now().date()
    window = (today - dt.timedelta(days=8), today - dt.timedelta(days=1))
    late = ("AAAUSDT", today - dt.timedelta(days=6))  # an old date, back-filled later
    replaced = ("BBBUSDT", today - dt.timedelta(days=3))
    deleted = ("BBBUSDT", today - dt.timedelta(days=5))
    bucket = Vision(moto_endpoint, "history-e2e")
    seed(bucket, {"AAAUSDT": days(*window), "BBBUSDT": days(*window)}, missing=(late,))
    v1, v2 = str(today), str(today + dt.timedelta(days=1))
    r1, r2 = tmp_path / "r1", tmp_path / "r2"

    with ReleaseServer(token=TOKEN) as server:
        server.add_repo(REPO)
        env = {"BFA_S3_ENDPOINT": moto_endpoint, "BFA_S3_BUCKET": bucket.name,
               "BFA_DATA_URL": bucket.data_url, "BFA_API_URL": server.api_url,
               "BFA_REPO": REPO, "GITHUB_TOKEN": TOKEN}  # fmt: skip
        s1, s2 = str(tmp_path / "s1"), str(tmp_path / "s2")
        cli("collect", "--state", s1, "--full-every", "0", env=env)
        cli("build", "--state", s1, "--out", str(r1), "--data-version", v1,
            "--previous", "none", env=env)  # fmt: skip
        cli("publish", str(r1), env=env)
        old = s3_object(bucket, *replaced)

        pause()
        between = utc_now()  # after release 1's collect, before the changes
        pause()
        bucket.put({m1_key(*late): b"uploaded late",
                    m1_key(*replaced): b"replaced in place, much longer than before"})  # fmt: skip
        bucket.delete(m1_key(*deleted))
        new = s3_object(bucket, *replaced)

        report = json.loads(
            cli(
                "collect", "--state", s2, "--base", "latest", "--full-every", "0", "--json", env=env
            )
        )
        # Seeded with release 1's history: only the three changes are new events.
        assert report["events_added"] == 3, report
        cli("build", "--state", s2, "--out", str(r2), "--data-version", v2,
            "--previous", v1, env=env)  # fmt: skip
        cli("publish", str(r2), env=env)

        def snapshot(day, version: str, *as_of: str) -> dict:
            return rows(cli("snapshot", str(day), "--data-version", version, *as_of,
                            "--format", "json", env=env))  # fmt: skip

        then = ("--as-of", stamp(between))
        for day in (late[1], replaced[1], deleted[1]):
            # As of the time between the collects, release 2 answers like release 1.
            assert snapshot(day, v2, *then) == snapshot(day, v1, *then) == snapshot(day, v1)
        assert ("AAAUSDT", str(late[1])) not in snapshot(late[1], v2, *then)
        assert ("BBBUSDT", str(deleted[1])) in snapshot(deleted[1], v2, *then)
        size = snapshot(replaced[1], v2, *then)[("BBBUSDT", str(replaced[1]))]["file_size_bytes"]
        assert size == old["file_size_bytes"] != new["file_size_bytes"]
        # As of now (and as published), the new state.
        for as_of in ((), ("--as-of", stamp(utc_now()))):
            assert ("AAAUSDT", str(late[1])) in snapshot(late[1], v2, *as_of)
            assert ("BBBUSDT", str(deleted[1])) not in snapshot(deleted[1], v2, *as_of)
            now = snapshot(replaced[1], v2, *as_of)[("BBBUSDT", str(replaced[1]))]
            assert now["file_size_bytes"] == new["file_size_bytes"]

    # Release 2's history: release 1's events unchanged (exact flags, times), then the new.
    first, second = history(r1), history(r2)
    assert [e for e in second if e in first] == first
    added = {(e["symbol"], e["date"], e["event"]): e for e in second if e not in first}
    assert set(added) == {(*late, "appeared"), (*replaced, "replaced"), (*deleted, "disappeared")}
    # The back-fill was seen to arrive (release 1's listings covered its date): exact.
    assert added[(*late, "appeared")]["exact"] is True
    assert added[(*replaced, "replaced")]["event_time"] == new["last_modified"]
    assert added[(*deleted, "disappeared")]["exact"] is False

    # A release without availability_events (here: its table alone) seeds the derived,
    # inexact history instead.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(r1 / "daily_availability.parquet", alone)
    s3 = tmp_path / "s3"
    cli("collect", "--state", str(s3), "--base", str(alone / "daily_availability.parquet"),
        "--full-every", "0", env=env)  # fmt: skip
    seeded = [e for e in load_state(s3).events.to_pylist() if e["event"] == "appeared"]
    assert any(e["exact"] for e in first)
    assert not any(e["exact"] for e in seeded if (e["symbol"], e["date"]) != late)
