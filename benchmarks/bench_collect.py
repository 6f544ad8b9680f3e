"""Collector benchmark: S3 listing requests of a daily run and of a full rebuild.

Run:  python benchmarks/bench_collect.py [--days 25] [--full-history 6] [--workers 8]
      python benchmarks/bench_collect.py --quick   (smoke run: --days 21 --full-history 1
      --workers 4; the same requests per symbol, writes no results file)

A moto S3 server (127.0.0.1, port 0) holds a bucket shaped like Binance Vision for the
1000 symbols of :func:`intake_bfa.testing.synthetic.generate_daily_availability`
(``{SYM}/1m/{SYM}-1m-{date}.zip`` plus a ``.CHECKSUM`` sibling per day). moto scans the
whole bucket on every listing request and keeps each object in Python, so the bucket
is a bounded subset, stated in the output:

* every symbol folder with its last ``--days`` available days (so all 1000 folders exist
  and the 20-day re-check window of a daily run is complete), and
* ``--full-history`` symbols (those with the most days) with their entire history, so
  folders of several 1000-key pages are exercised.

Seeding goes straight into the moto backend of this process (boto3 puts run at ~4 ms
per object); the next day's objects are then added with boto3, as a publisher would.

Measured:

(a) a daily incremental run (re-check window 20 days) after the next day appeared:
    requests per symbol (goal <= 1.1) and the ratio to the HEAD-per-symbol-per-day
    approach over the same 20-day window (symbols x 20 requests); measured twice from the
    same state, without the weekly rotation (``full_every=0``, the daily run as it was) and
    with it (``full_every=7``: one seventh of the symbols listed whole), as a ratio;
(b) a full rebuild: requests vs the minimum, sum(ceil(keys_per_folder / 1000)) +
    discovery pages (goal: within 5 %). The full-scale figure (the whole synthetic
    history) is extrapolated: a folder of n keys costs ceil(n / 1000) requests, which
    (b) verifies on the seeded folders, so the full-scale count is that minimum;
(c) the rotation at full scale, by the same rule: the requests of each of the 7 daily runs
    of a cycle (each symbol of the day's slice costs its whole folder's pages instead of
    one), against the daily run without rotation.

Also checked: the incremental state equals a full rebuild of the same bucket.
Results: printed as Markdown and written to benchmarks/results/collect.json (not with
``--quick``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
END = dt.date(2026, 11, 22)  # last synthetic day; the bucket first holds days up to END - 1
BUCKET = "data.binance.vision"
ROOT = "data/futures/um/daily/klines/"
RECHECK_DAYS = 20
FULL_EVERY = 7


def _key(symbol: str, day: dt.date) -> str:
    return f"{ROOT}{symbol}/1m/{symbol}-1m-{day.isoformat()}.zip"


def plan_bucket(days: int, full_history: int):
    """Which (symbol, day) objects the bucket holds, and the full-scale key counts."""
    import pyarrow.compute as pc

    from intake_bfa.testing.synthetic import generate_daily_availability

    table = generate_daily_availability(n_symbols=1000, end=END)
    table = table.filter(pc.equal(table["available"], True))
    by_symbol: dict[str, list[tuple[dt.date, dt.datetime]]] = defaultdict(list)
    for symbol, day, modified in zip(
        table["symbol"].to_pylist(),
        table["date"].to_pylist(),
        table["last_modified"].to_pylist(),
        strict=True,
    ):
        by_symbol[symbol].append((day, modified))
    longest = sorted(by_symbol, key=lambda s: (-len(by_symbol[s]), s))[:full_history]
    seeded, new_day = {}, {}
    for symbol, rows in by_symbol.items():
        before = [r for r in rows if r[0] < END]
        seeded[symbol] = before if symbol in longest else before[-days:]
        new_day[symbol] = [r for r in rows if r[0] == END]
    full_scale_keys = {s: 2 * len(rows) for s, rows in by_symbol.items()}
    return seeded, new_day, longest, full_scale_keys


def seed_backend(seeded: dict[str, list]) -> int:
    """Put every planned object (and its .CHECKSUM) straight into moto's in-process backend."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    count = 0
    for symbol, rows in seeded.items():
        for day, modified in rows:
            key = _key(symbol, day)
            obj = backend.put_object(BUCKET, key, f"{symbol}{day}".encode())
            obj.last_modified = modified  # the synthetic publication time, as S3 reports it
            backend.put_object(BUCKET, key + ".CHECKSUM", b"0" * 64)
            count += 2
    return count


def minimum_requests(keys_per_folder: dict[str, int], n_folders: int) -> int:
    """Fewest ListObjects requests that can list every folder and discover them."""
    pages = sum(max(1, math.ceil(n / 1000)) for n in keys_per_folder.values())
    return pages + max(1, math.ceil(n_folders / 1000))


def rotation_cost(keys_per_folder: dict[str, int], first_day: dt.date) -> dict:
    """Requests of each daily run of a rotation cycle at full scale, vs no rotation."""
    from intake_bfa.producer.collect import due_for_full_listing

    discovery = max(1, math.ceil(len(keys_per_folder) / 1000))
    baseline = discovery + len(keys_per_folder)  # one window listing per symbol
    per_day = []
    for i in range(FULL_EVERY):
        day = first_day + dt.timedelta(days=i)
        per_day.append(
            discovery
            + sum(
                max(1, math.ceil(n / 1000)) if due_for_full_listing(s, day, FULL_EVERY) else 1
                for s, n in keys_per_folder.items()
            )
        )
    mean = sum(per_day) / len(per_day)
    return {
        "full_every": FULL_EVERY,
        "requests_per_day": per_day,
        "mean_requests_per_day": round(mean, 1),
        "max_requests_per_day": max(per_day),
        "baseline_requests_per_day": baseline,
        "mean_over_baseline": mean / baseline,
        "max_over_baseline": max(per_day) / baseline,
        "worst_case_delay_days": FULL_EVERY,
        "delay_rule": "a change older than the re-check window is listed on its symbol's day of "
        "the cycle, at most full_every days after it happened, and published by that run",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=int, default=25, help="last available days per symbol")
    parser.add_argument("--full-history", type=int, default=6, help="symbols seeded in full")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 21 days, 1 full history, 4 workers"
    )
    args = parser.parse_args()
    if args.quick:
        # 21 days still covers the daily run's 20-day window; one full history still
        # crosses 1000-key pages.
        args.days, args.full_history, args.workers = 21, 1, 4
    logging.getLogger("werkzeug").setLevel(logging.WARNING)

    import boto3
    from moto.server import ThreadedMotoServer

    from intake_bfa.producer.collect import collect
    from intake_bfa.producer.state import load_state

    started = time.perf_counter()
    seeded, new_day, longest, full_scale_keys = plan_bucket(args.days, args.full_history)
    plan_s = time.perf_counter() - started

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket=BUCKET)
    t0 = time.perf_counter()
    n_objects = seed_backend(seeded)
    seed_s = time.perf_counter() - t0
    keys_per_folder = {s: 2 * len(rows) for s, rows in seeded.items()}
    run = dict(
        endpoint=endpoint, bucket=BUCKET, data_url=f"{endpoint}/{BUCKET}", workers=args.workers
    )

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        full1 = collect(tmp / "state", full=True, today=END, **run)

        # The next day lands (boto3 puts, as the publisher would do).
        added = {_key(s, d): f"{s}{d}".encode() for s, rows in new_day.items() for d, _ in rows}
        added.update({k + ".CHECKSUM": b"0" * 64 for k in list(added)})
        with ThreadPoolExecutor(16) as pool:
            list(
                pool.map(
                    lambda kv: s3.put_object(Bucket=BUCKET, Key=kv[0], Body=kv[1]), added.items()
                )
            )
        for s, rows in new_day.items():
            keys_per_folder[s] += 2 * len(rows)

        import shutil

        shutil.copytree(tmp / "state", tmp / "baseline")
        next_day = END + dt.timedelta(days=1)
        baseline = collect(
            tmp / "baseline", recheck_days=RECHECK_DAYS, full_every=0, today=next_day, **run
        )
        daily = collect(
            tmp / "state", recheck_days=RECHECK_DAYS, full_every=FULL_EVERY, today=next_day, **run
        )
        full2 = collect(tmp / "rebuild", full=True, today=END + dt.timedelta(days=1), **run)

        def table(folder):
            t = load_state(folder).availability.drop_columns(["probe_timestamp"])
            return t.sort_by([("symbol", "ascending"), ("date", "ascending")])

        equal = table(tmp / "state").equals(table(tmp / "rebuild"))
    server.stop()

    n = daily.symbols_discovered
    daily_requests = daily.total_requests
    head_requests = n * RECHECK_DAYS
    seeded_min = minimum_requests(keys_per_folder, n)
    full_scale_min = minimum_requests(full_scale_keys, len(full_scale_keys))
    results = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "bucket": {
            "symbols": n,
            "objects_seeded": n_objects + len(added),
            "days_per_symbol": args.days,
            "full_history_symbols": longest,
            "largest_folder_keys": max(keys_per_folder.values()),
            "seed_seconds": round(seed_s, 1),
            "plan_seconds": round(plan_s, 1),
        },
        "daily_incremental": {
            "recheck_days": RECHECK_DAYS,
            "requests": daily.requests,
            "total_requests": daily_requests,
            "requests_per_symbol": daily_requests / n,
            "goal_per_symbol": 1.1,
            "head_approach_requests": head_requests,
            "head_over_listing_ratio": head_requests / daily_requests,
            "rows_added": daily.rows_added,
            "elapsed_s": daily.elapsed,
            "equals_full_rebuild": equal,
        },
        "full_rebuild": {
            "requests": full2.requests,
            "total_requests": full2.total_requests,
            "minimum_requests": seeded_min,
            "over_minimum": full2.total_requests / seeded_min - 1,
            "goal_over_minimum": 0.05,
            "rows": full2.rows_added,
            "elapsed_s": full2.elapsed,
            "first_full_run_requests": full1.total_requests,
        },
        "full_scale_extrapolated": {
            "available_rows": sum(k // 2 for k in full_scale_keys.values()),
            "keys": sum(full_scale_keys.values()),
            "full_rebuild_minimum_requests": full_scale_min,
            "full_rebuild_requests": full_scale_min,
            "head_full_history_requests": n * ((END - dt.date(2019, 12, 31)).days + 1),
            "daily_incremental_requests": daily_requests,
            "method": "each folder costs ceil(keys / 1000) pages (verified above on every seeded "
            "folder, up to 5 pages); the daily run's cost does not depend on history length",
        },
    }
    results["daily_incremental"]["without_rotation"] = {
        "total_requests": baseline.total_requests,
        "requests": baseline.requests,
    }
    results["daily_incremental"]["symbols_full_slice"] = daily.symbols_full_slice
    results["daily_incremental"]["rotation_over_baseline"] = (
        daily.total_requests / baseline.total_requests
    )
    results["rotation_full_scale"] = rotation_cost(full_scale_keys, END + dt.timedelta(days=1))
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        text = json.dumps(results, indent=1, ensure_ascii=False) + "\n"
        (RESULTS / "collect.json").write_text(text)
    _print(results)


def _print(r: dict) -> None:
    b, d, f, x = (
        r["bucket"],
        r["daily_incremental"],
        r["full_rebuild"],
        r["full_scale_extrapolated"],
    )
    ok = lambda good: "yes" if good else "NO"  # noqa: E731
    print(f"## Collector: S3 listing requests ({r['when']})\n")
    print(
        f"Bucket: {b['symbols']} symbol folders, {b['objects_seeded']:,} objects "
        f"(last {b['days_per_symbol']} days per symbol + {len(b['full_history_symbols'])} "
        f"full histories, largest folder {b['largest_folder_keys']:,} keys); "
        f"seeded in {b['seed_seconds']} s.\n"
    )
    print("| measure | value | goal | met |")
    print("|---|---:|---:|:-:|")
    print(
        f"| daily run: requests ({d['requests']}) | {d['total_requests']:,} | | |\n"
        f"| daily run: requests per symbol | {d['requests_per_symbol']:.3f} | <= 1.1 | "
        f"{ok(d['requests_per_symbol'] <= 1.1)} |\n"
        f"| HEAD per symbol per day, 20-day window | {d['head_approach_requests']:,} | | |\n"
        f"| HEAD / listing ratio | {d['head_over_listing_ratio']:.1f}x | | |\n"
        f"| daily run == full rebuild | {d['equals_full_rebuild']} | True | "
        f"{ok(d['equals_full_rebuild'])} |\n"
        f"| full rebuild: requests ({f['requests']}) | {f['total_requests']:,} | | |\n"
        f"| full rebuild: minimum | {f['minimum_requests']:,} | | |\n"
        f"| full rebuild: over minimum | {100 * f['over_minimum']:.2f} % | <= 5 % | "
        f"{ok(f['over_minimum'] <= 0.05)} |\n"
        f"| full scale ({x['keys']:,} keys): full rebuild requests (extrapolated) | "
        f"{x['full_rebuild_requests']:,} | | |\n"
        f"| full scale: HEAD per symbol per day, whole history | "
        f"{x['head_full_history_requests']:,} | | |"
    )
    rot = r["rotation_full_scale"]
    print(
        f"| daily run without rotation (same state) | "
        f"{d['without_rotation']['total_requests']:,} | | |\n"
        f"| daily run with rotation ({d['symbols_full_slice']} symbols listed whole) / "
        f"without | {d['rotation_over_baseline']:.3f}x | | |\n"
        f"| full scale, rotation every {rot['full_every']} days: requests per day "
        f"(mean / max) | {rot['mean_requests_per_day']:,} / {rot['max_requests_per_day']:,} "
        f"| | |\n"
        f"| full scale: rotation / daily run without it (mean / max) | "
        f"{rot['mean_over_baseline']:.3f}x / {rot['max_over_baseline']:.3f}x | | |\n"
        f"| worst-case delay of a change older than the window | "
        f"{rot['worst_case_delay_days']} days | | |"
    )
    print(
        f"\nElapsed against moto (bound by moto scanning the bucket per request): "
        f"daily {d['elapsed_s']:.1f} s, full rebuild {f['elapsed_s']:.1f} s."
    )


if __name__ == "__main__":
    main()
