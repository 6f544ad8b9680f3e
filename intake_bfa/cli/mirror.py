"""``bfa mirror sync | verify | status``: an S3-compatible mirror of the releases.

The producer's mirror modules (and s3fs) are imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from intake_bfa.cli.common import (
    add_data_version,
    add_format_options,
    settings_from_args,
    wants_json,
)
from intake_bfa.display.text import dict_table, human_size


def _store(args: argparse.Namespace, settings):
    from intake_bfa.producer.mirror.sync import MirrorStore, mirror_target

    # -vv turns on DEBUG everywhere: botocore would then log request headers (signatures,
    # session tokens). Credentials never reach the terminal, whatever the verbosity.
    for name in ("botocore", "aiobotocore", "s3fs"):
        logger = logging.getLogger(name)
        logger.setLevel(max(logging.INFO, logger.getEffectiveLevel()))
    target = mirror_target(
        args.bucket, endpoint_url=args.endpoint_url, public_url=getattr(args, "public_url", None)
    )
    return MirrorStore(
        target, settings, profile=args.profile, region=args.region, acl=getattr(args, "acl", None)
    )


@contextmanager
def _source(args: argparse.Namespace, settings):
    from intake_bfa.producer.mirror.sync import from_published, from_release_dir

    if args.release_dir:
        yield from_release_dir(args.release_dir)
    else:
        with from_published(args.version, settings) as source:
            yield source


def _print_objects(report, verbs: dict[str, str]) -> None:
    rows = [
        {
            "file": o.name,
            "action": verbs.get(o.action, o.action),
            "size": human_size(o.size, "-"),
            "verified": o.verified or "-",
        }
        for o in report.objects
    ]
    print(dict_table(rows, ["file", "action", "size", "verified"]))


def _hint(report, listing: bool) -> list[str]:
    if report.listed:
        verb = "would list" if report.dry_run else "now list"
        return [
            f"{report.source}: {' and '.join(report.listed)} {verb} the mirror "
            f"({report.template}); publish it with: bfa publish {report.source}"
        ]
    if report.template and report.published:
        return [
            f"{report.tag} is published and immutable, so its manifest cannot list the mirror; "
            f"point consumers at it with BFA_MIRRORS='{report.template}' (or the catalog's "
            "mirrors)"
        ]
    if report.template and listing:
        return [f"{report.source} already lists the mirror ({report.template})"]
    if not report.template:
        goal = "get the BFA_MIRRORS template" if report.published else "list it in the release"
        return [
            "pass --public-url (the HTTP address of the bucket prefix) to check that consumers "
            f"can read the mirror and to {goal}"
        ]
    return []


def cmd_sync(args: argparse.Namespace) -> int:
    from intake_bfa.producer.mirror.sync import sync

    settings = settings_from_args(args)
    store = _store(args, settings)
    with _source(args, settings) as source:
        report = sync(
            source,
            store,
            settings,
            verify=args.verify,
            dry_run=args.dry_run,
            force=args.force,
            list_mirror=not args.no_list,
            check_public=not args.skip_public_check,
        )
    if wants_json(args):
        print(json.dumps(asdict(report), indent=1, ensure_ascii=False))
        return 0
    planned = {"uploaded": "upload", "replaced": "replace"} if report.dry_run else {}
    counts = ", ".join(
        f"{len(report.names(a))} {'to ' + planned[a] if a in planned else a}"
        for a in ("uploaded", "replaced", "unchanged")
    )
    head = "dry run, nothing written: " if report.dry_run else ""
    print(f"{head}{report.tag} -> {report.target}/{report.tag} ({report.endpoint}): {counts}")
    _print_objects(report, {a: f"would {verb}" for a, verb in planned.items()})
    if report.public_check:
        print(f"public read checked: {report.public_check}")
    for line in _hint(report, listing=not args.no_list):
        print(line)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from intake_bfa.producer.mirror.sync import verify_mirror

    settings = settings_from_args(args)
    store = _store(args, settings)
    with _source(args, settings) as source:
        report = verify_mirror(
            source,
            store,
            settings,
            download=args.download,
            check_public=not args.skip_public_check,
        )
    if wants_json(args):
        print(json.dumps(asdict(report), indent=1, ensure_ascii=False))
    else:
        state = "complete" if report.ok else "INCOMPLETE"
        print(f"{report.target}/{report.tag} ({report.endpoint}): {state}")
        _print_objects(report, {})
        if report.public_check:
            print(f"public read checked: {report.public_check}")
    if not report.ok:
        from intake_bfa.errors import MirrorError

        bad = ", ".join(f"{o.name} ({o.action})" for o in report.objects if o.action != "ok")
        raise MirrorError(
            f"{report.target}/{report.tag} is incomplete: {bad}; run bfa mirror sync",
            bucket=report.target,
        )
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from intake_bfa.producer.mirror.sync import status

    rows = status(_store(args, settings_from_args(args)))
    if wants_json(args):
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no versions on the mirror", file=sys.stderr)
        return 0
    table = [{**r, "bytes": human_size(r["bytes"], "-"), "complete": "yes" if r["complete"] else "NO"}
             for r in rows]  # fmt: skip
    print(dict_table(table, ["tag", "objects", "bytes", "complete"]))
    return 0


def _destination(p: argparse.ArgumentParser, *, public: bool) -> None:
    p.add_argument("--bucket", metavar="S3_URL",
                   help="s3://bucket or s3://bucket/prefix (BFA_MIRROR_BUCKET)")  # fmt: skip
    p.add_argument("--endpoint-url", metavar="URL",
                   help="S3 endpoint (BFA_MIRROR_ENDPOINT, else AWS_ENDPOINT_URL, else AWS)")  # fmt: skip
    p.add_argument("--profile", help="AWS profile for the credentials (default: AWS_PROFILE)")
    p.add_argument("--region", help="S3 region (default: AWS_REGION)")
    if public:
        p.add_argument("--public-url", metavar="URL", help="HTTP(S) address where consumers "
                       "read the bucket prefix (BFA_MIRROR_PUBLIC_URL)")  # fmt: skip
        p.add_argument("--skip-public-check", action="store_true",
                       help="do not download an asset from --public-url to check it")  # fmt: skip
    add_format_options(p, "report")


def _release(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--release-dir", metavar="DIR", help="a folder written by bfa build")
    add_data_version(what, help="a published version of --repo: latest or e.g. 2026-11-20")


def add_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Register ``bfa mirror sync | verify | status`` on the ``bfa`` parser."""
    p = sub.add_parser(
        "mirror",
        help="copy releases to an S3-compatible bucket that consumers fall back to (producer)",
        description="Mirror releases to an S3-compatible bucket through s3fs "
        "(pip install 'intake-bfa[mirror]'); credentials come from the standard AWS chain. "
        "Example: bfa mirror sync --release-dir release --bucket s3://my-bucket/bfa",
    )
    actions = p.add_subparsers(dest="mirror_command", metavar="ACTION", required=True)
    p = actions.add_parser(
        "sync",
        parents=[common],
        help="upload a release's files and manifest, verified; skip what is already there",
        description="Copy a release folder (before bfa publish) or a published version to "
        "<prefix>/<tag>/ in the bucket: every object verified (size, sha256, ETag), existing "
        "intact objects left alone, wrong ones replaced, manifest.json last; re-running resumes. "
        "With --public-url, a release folder's manifest.json and catalog.yaml are rewritten to "
        "list the mirror. Example: bfa mirror sync --release-dir release --bucket "
        "s3://my-bucket/bfa --public-url https://cdn.example.com/bfa",
    )
    _release(p)
    _destination(p, public=True)
    p.add_argument("--verify", choices=["etag", "download"], default="etag",
                   help="etag: one HEAD per object (default); download: read every object "
                   "back and hash it")  # fmt: skip
    p.add_argument("--acl", help="canned ACL for every object, e.g. public-read")
    p.add_argument("--dry-run", action="store_true", help="show the plan, write nothing")
    p.add_argument("--force", action="store_true",
                   help="overwrite another build of the same version on the mirror")  # fmt: skip
    p.add_argument("--no-list", action="store_true",
                   help="leave the release folder's manifest.json and catalog.yaml as they are")  # fmt: skip
    p.set_defaults(func=cmd_sync)

    p = actions.add_parser(
        "verify",
        parents=[common],
        help="check that the mirror holds a release intact (exit 1 if not)",
        description="Check every object of a release on the mirror (size, sha256, ETag; "
        "--download re-hashes the bytes) and, with --public-url, read one as a consumer "
        "would. Exit status 1 if anything is missing or wrong. "
        "Example: bfa mirror verify --data-version latest --bucket s3://my-bucket/bfa",
    )
    _release(p)
    _destination(p, public=True)
    p.add_argument("--download", action="store_true", help="read every object back and hash it")
    p.set_defaults(func=cmd_verify)

    p = actions.add_parser(
        "status",
        parents=[common],
        help="list the versions on the mirror and whether each is complete",
        description="List the tags under the bucket prefix with their object count, size and "
        "whether each has its manifest.json (complete). "
        "Example: bfa mirror status --bucket s3://my-bucket/bfa",
    )
    _destination(p, public=False)
    p.set_defaults(func=cmd_status)
