"""``bfa collect``, ``bfa build``, ``bfa publish``: the producer's commands.

The producer modules are imported only when one of these commands runs, so the consumer
commands never load them.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from intake_bfa.cli.common import (
    add_data_version,
    add_format_options,
    settings_from_args,
    wants_json,
    whole_number,
)

log = logging.getLogger(__name__)


def _emit(report: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        data = asdict(report) if is_dataclass(report) else report
        print(json.dumps(data, indent=1, default=str, ensure_ascii=False))
    else:
        print("\n".join(lines))


def _release_tables(reference: str, settings) -> tuple[Path, Any, Any]:
    """A published ``daily_availability`` as Arrow, and its ``availability_events`` or None.

    ``reference`` is a ``daily_availability.parquet`` path (its history, when any, is the
    ``availability_events.parquet`` beside it: a release folder) or a version of the repo
    (its history when the manifest lists one: older releases and the rolling layout don't).
    """
    import pyarrow.parquet as pq

    from intake_bfa.datasets import ensure_local
    from intake_bfa.resolve import pin

    path = Path(reference)
    if path.is_file():
        beside = path.parent / "availability_events.parquet"
        events = beside if beside.is_file() else None
    else:
        manifest = pin(reference, settings)
        path = ensure_local(settings, manifest, "daily_availability")
        events = None
        if "availability_events" in manifest.datasets:
            events = ensure_local(settings, manifest, "availability_events")
    return path, pq.read_table(path), pq.read_table(events) if events else None


def _release_path(reference: str, settings) -> tuple[Path, str]:
    """A ``daily_availability`` file and its label: a path as is, else a pinned version's."""
    from intake_bfa.datasets import ensure_local
    from intake_bfa.resolve import pin

    path = Path(reference)
    if path.is_file():
        return path, str(path)
    manifest = pin(reference, settings)
    return ensure_local(settings, manifest, "daily_availability"), manifest.version


def cmd_collect(args: argparse.Namespace) -> int:
    from intake_bfa.producer.collect import collect
    from intake_bfa.producer.state import load_state, save_state, seed_from_table

    settings = settings_from_args(args)
    state_dir = Path(args.state)
    if args.base and load_state(state_dir).last_date is None:
        path, table, events = _release_tables(args.base, settings)
        save_state(state_dir, seed_from_table(table, events))
        if events is None:
            log.info("seeded %s from %s (%d rows); the release has no availability_events: "
                     "history derived from its rows, not exact", state_dir, path,
                     table.num_rows)  # fmt: skip
        else:
            log.info("seeded %s from %s (%d rows) with its history (%d events)", state_dir,
                     path, table.num_rows, events.num_rows)  # fmt: skip
    report = collect(
        state_dir,
        full=args.full,
        recheck_days=args.recheck_days,
        full_every=args.full_every,
        workers=args.workers,
        volume=args.volume,
        error_threshold=args.error_threshold,
        endpoint=args.endpoint,
        bucket=args.bucket,
        data_url=args.data_url,
        settings=settings,
    )
    _emit(
        report.to_dict(),
        wants_json(args),
        [
            f"collected into {state_dir}: {report.symbols_listed} of "
            f"{report.symbols_discovered} symbols listed ({report.symbols_new} new, "
            f"{len(report.symbols_failed)} failed), {report.keys_seen:,} keys seen, rows "
            f"+{report.rows_added:,} -{report.rows_removed:,}, {report.volume_rows:,} volume "
            f"rows, {report.total_requests:,} S3 requests in {report.elapsed:.1f} s",
            *(f"  failed: {sym}: {why}" for sym, why in sorted(report.symbols_failed.items())),
        ],
    )
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from intake_bfa.producer.release import build_from_state, describe

    settings = settings_from_args(args)
    previous = label = None
    if args.previous and args.previous != "none":
        previous, label = _release_path(args.previous, settings)
    result = build_from_state(
        Path(args.state),
        Path(args.out),
        version=args.version,
        previous=previous,
        previous_label=label,
        repo=args.pin_repo,
        strict=args.strict,
    )
    summary = describe(result)
    _emit(
        summary,
        wants_json(args),
        [
            f"built {summary['version']} in {summary['out_dir']}: {summary['rows']:,} rows, "
            f"{summary['coverage'][0]} .. {summary['coverage'][1]}",
            *summary["findings"],
        ],
    )
    if not result.report.ok:
        from intake_bfa.errors import BfaError

        raise BfaError(
            f"validation failed for {result.version}; nothing should be published "
            f"(see {result.out_dir / 'validation.json'})",
            version=result.version,
        )
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from intake_bfa.producer.publish import publish

    report = publish(
        Path(args.release_dir),
        settings=settings_from_args(args),
        keep_daily=args.keep_daily,
        keep_month_ends=not args.no_month_ends,
        rolling=args.rolling,
        verify=args.verify,
    )
    state = "unchanged (identical release already published)" if report.noop else "published"
    _emit(
        report,
        wants_json(args),
        [
            f"{report.tag} {state}: {report.html_url}",
            f"  uploaded {len(report.uploaded)}, skipped {len(report.skipped)} identical, "
            f"verified {len(report.verified)}; retention deleted {len(report.deleted_releases)}"
            + ("; rolling 'latest' refreshed" if report.rolling_refreshed else ""),
            *(f"  error after publishing: {e}" for e in report.errors),
        ],
    )
    # The release is out either way; a failed retention or rolling refresh still needs eyes.
    return 1 if report.errors else 0


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register the producer subcommands on the ``bfa`` parser."""
    p = sub.add_parser(
        "collect",
        parents=[common],
        help="list Binance Vision and update the collected state (producer)",
        description="List the Binance Vision bucket into a state folder: incremental by "
        "default (a re-check window per symbol), --full to list everything. "
        "Example: bfa collect --state state --base latest --volume",
    )
    p.add_argument("--state", default="bfa-state", help="state folder (default bfa-state)")
    p.add_argument("--base", help="seed an empty state from a published release: latest, a "
                   "version, or a daily_availability.parquet path")  # fmt: skip
    p.add_argument("--full", action="store_true", help="list every key, not just the window")
    p.add_argument("--volume", action="store_true", help="also collect daily volume and OHLC")
    p.add_argument("--recheck-days", type=int, default=20, help="re-check window (default 20)")
    p.add_argument("--full-every", type=whole_number(0), default=7,
                   help="list every symbol in full once per this many days, one slice per run, "
                        "catching changes older than the window (default 7; 0: never)")  # fmt: skip
    p.add_argument("--workers", type=int, default=8, help="concurrent listings (default 8)")
    p.add_argument("--error-threshold", type=float, default=0.05,
                   help="fail when more symbols than this fraction fail (default 0.05)")  # fmt: skip
    p.add_argument("--endpoint", help="S3 endpoint (BFA_S3_ENDPOINT)")
    p.add_argument("--bucket", help="bucket (BFA_S3_BUCKET, default data.binance.vision)")
    p.add_argument("--data-url", help="where files download from (BFA_DATA_URL)")
    add_format_options(p, "report")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser(
        "build",
        parents=[common],
        help="build a validated release folder from the collected state (producer)",
        description="Write the DuckDB database, Parquet files, manifest, pinned catalog and "
        "release notes, then run the validation gates (exit 1 if they fail). "
        "Example: bfa build --state state --out release --previous latest",
    )
    p.add_argument("--state", default="bfa-state", help="state folder (default bfa-state)")
    p.add_argument("--out", required=True, help="release folder to write")
    add_data_version(p, help="release version (default: today, UTC)")
    p.add_argument("--previous", help="previous release for the diff: latest, a version, a "
                   "daily_availability.parquet path, or none")  # fmt: skip
    p.add_argument("--pin-repo", help="repository written into the release's catalog.yaml")
    p.add_argument("--strict", action="store_true", help="interior drops fail the gates")
    add_format_options(p, "report")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser(
        "publish",
        parents=[common],
        help="publish a built release folder as a dated GitHub release (producer)",
        description="Create a draft release, upload and verify every asset, then publish; "
        "re-running resumes. Needs GITHUB_TOKEN. Example: bfa publish release --rolling",
    )
    p.add_argument("release_dir", help="folder written by bfa build")
    p.add_argument("--keep-daily", type=int, default=30, help="daily releases kept (default 30)")
    p.add_argument("--no-month-ends", action="store_true", help="do not keep month-end releases")
    p.add_argument("--rolling", action="store_true",
                   help="also refresh the rolling 'latest' release of the old layout")  # fmt: skip
    p.add_argument("--verify", choices=["digest", "download"], default="digest",
                   help="how uploaded assets are verified (default digest)")  # fmt: skip
    add_format_options(p, "report")
    p.set_defaults(func=cmd_publish)
