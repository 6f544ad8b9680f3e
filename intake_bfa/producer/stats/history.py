"""The download-count history: snapshots of every asset's counter, in an append-only CSV file.

GitHub only reports cumulative ``download_count`` s, and forgets them when retention deletes
a release, so trends need our own record. Each ``bfa stats --history FILE --append`` adds one
*snapshot*: one row per asset, all with the same ``observed_at`` (UTC). The file is plain CSV
with a fixed header (:data:`HISTORY_HEADER`), diff-friendly in git.

Writes never rewrite or truncate what is there: the file is opened for appending, locked
(``flock``), its header checked (a file that is not ours is refused before a byte is written),
and the whole snapshot goes out in one write, flushed and fsynced. A last line cut off by an
earlier crash is left alone and the snapshot starts on a new line; readers skip lines that do
not parse, and :func:`intake_bfa.producer.stats.counts.monthly_totals` never lets a counter go down,
so a cut-off count can delay downloads by one snapshot but never invent or lose any.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from intake_bfa.errors import StatsError

log = logging.getLogger(__name__)

#: Columns of the history file, in order; its first line must be exactly these.
HISTORY_HEADER = (
    "observed_at",
    "repo",
    "tag",
    "asset",
    "asset_id",
    "published_at",
    "uploaded_at",
    "size",
    "download_count",
)
_HEADER_LINE = ",".join(HISTORY_HEADER)


def parse_time(value: str | None) -> datetime | None:
    """A GitHub/ISO-8601 UTC timestamp (``2026-11-23T10:15:02Z``) as an aware datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """``value`` as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds, as GitHub writes times)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class AssetCount:
    """One asset's download counter at one moment.

    Attributes
    ----------
    tag
        Tag of the release holding the asset.
    asset
        Asset file name.
    asset_id
        GitHub's asset id. A re-uploaded asset (the rolling ``latest`` release is re-uploaded
        daily) gets a new id and a counter starting at 0, so counters are tracked per id.
    published_at
        When the release was published (UTC ISO), None if unknown.
    uploaded_at
        When this asset was uploaded (UTC ISO), None if unknown.
    size
        Bytes.
    download_count
        Downloads since the upload, as GitHub counts them (cumulative).
    """

    tag: str
    asset: str
    asset_id: int
    published_at: str | None
    uploaded_at: str | None
    size: int
    download_count: int

    @property
    def available_since(self) -> str | None:
        """When the public could first download it: the later of publication and upload."""
        stamps = [s for s in (self.published_at, self.uploaded_at) if s]
        return max(stamps, key=lambda s: parse_time(s)) if stamps else None


@dataclass(frozen=True)
class Snapshot:
    """Every asset counter of one repository, observed at one moment.

    Attributes
    ----------
    observed_at
        UTC ISO time of the observation.
    repo
        ``owner/name``.
    assets
        One entry per asset of every non-draft release.
    """

    observed_at: str
    repo: str
    assets: tuple[AssetCount, ...]

    @property
    def total(self) -> int:
        """Sum of the counters (downloads of the releases that still exist)."""
        return sum(a.download_count for a in self.assets)


@dataclass
class History:
    """What :func:`read_history` found in a history file.

    Attributes
    ----------
    path
        The file.
    snapshots
        Snapshots of every repository in the file, oldest first.
    bad_lines
        Line numbers (1-based) that did not parse and were skipped.
    """

    path: Path
    snapshots: list[Snapshot] = field(default_factory=list)
    bad_lines: list[int] = field(default_factory=list)

    def for_repo(self, repo: str) -> list[Snapshot]:
        """The snapshots of ``repo`` (matched case-insensitively, as GitHub does)."""
        return [s for s in self.snapshots if s.repo.lower() == repo.lower()]


def _not_ours(path: Path, what: str) -> StatsError:
    return StatsError(
        f"{path} is not a bfa stats history file ({what}); its first line must be "
        f"{_HEADER_LINE!r}. Nothing was written; give --history a new file name or "
        "an existing history file",
        path=str(path),
    )


def _check_header(path: Path, first: bytes) -> None:
    try:
        line = first.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise _not_ours(path, "not UTF-8 text") from None
    if line.lstrip("\ufeff") != _HEADER_LINE:  # tolerate a BOM a spreadsheet may have added
        raise _not_ours(path, f"its first line is {line[:80]!r}")


def _row(raw: list[str]) -> tuple[str, str, AssetCount]:
    """One CSV row -> (observed_at, repo, AssetCount); ValueError if it does not parse."""
    if len(raw) != len(HISTORY_HEADER):
        raise ValueError(f"{len(raw)} fields")
    observed, repo, tag, asset, asset_id, published, uploaded, size, count = raw
    when = parse_time(observed)
    parse_time(published), parse_time(uploaded)  # must parse when present
    if when is None or not (repo and tag and asset):
        raise ValueError("empty observed_at, repo, tag or asset")
    counts = int(asset_id), int(size), int(count)
    if min(counts) < 0:
        raise ValueError("negative number")
    asset_count = AssetCount(
        tag, asset, counts[0], published or None, uploaded or None, *counts[1:]
    )
    return format_time(when), repo, asset_count


def read_history(path: str | os.PathLike[str]) -> History:
    """Read a history file written by :func:`append_snapshot`.

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    History
        Its snapshots, grouped by ``(observed_at, repo)``, oldest first; lines that do not
        parse (a cut-off last line, a hand edit) are skipped and listed in ``bad_lines``.

    Raises
    ------
    StatsError
        If the file is not a history file (wrong header, not text).
    FileNotFoundError
        If it does not exist.
    """
    path = Path(path)
    data = path.read_bytes()
    history = History(path)
    if not data:
        return history
    _check_header(path, data.split(b"\n", 1)[0])
    text = data.decode("utf-8").lstrip("\ufeff")
    groups: dict[tuple[str, str], dict[int | tuple[str, str], AssetCount]] = {}
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader)
    for raw in reader:
        if not raw:
            continue
        try:
            observed, repo, count = _row(raw)
        except (ValueError, TypeError):
            history.bad_lines.append(reader.line_num)
            continue
        key = count.asset_id or (count.tag, count.asset)
        groups.setdefault((observed, repo), {})[key] = count
    if history.bad_lines:
        log.warning(
            "%s: skipped %d line(s) that do not parse (line %s); a cut-off last line is "
            "left by an interrupted write",
            path,
            len(history.bad_lines),
            ", ".join(map(str, history.bad_lines[:5])),
        )
    history.snapshots = [
        Snapshot(observed, repo, tuple(assets.values()))
        for (observed, repo), assets in sorted(groups.items(), key=lambda kv: kv[0][0])
    ]
    return history


def snapshot_csv(snapshot: Snapshot) -> str:
    """The rows of ``snapshot`` as CSV text (no header), one line per asset."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for a in sorted(snapshot.assets, key=lambda a: (a.tag, a.asset)):
        writer.writerow(
            [
                snapshot.observed_at,
                snapshot.repo,
                a.tag,
                a.asset,
                a.asset_id,
                a.published_at or "",
                a.uploaded_at or "",
                a.size,
                a.download_count,
            ]
        )
    return out.getvalue()


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: appends are still one write each
        return
    fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes


def _read_at(fd: int, offset: int, size: int) -> bytes:
    os.lseek(fd, offset, os.SEEK_SET)  # O_APPEND only moves writes; reads go where we say
    return os.read(fd, size)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:  # a regular file takes it in one write; loop only for a short write
        view = view[os.write(fd, view) :]


def append_snapshot(path: str | os.PathLike[str], snapshot: Snapshot) -> int:
    """Append one snapshot to a history file, creating it (and its folder) if needed.

    Parameters
    ----------
    path
        The CSV file.
    snapshot
        What to append.

    Returns
    -------
    int
        Rows appended.

    Raises
    ------
    StatsError
        If the file exists but is not a history file; nothing is written then.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o666)
    try:
        _lock(fd)  # two runs appending at once would otherwise interleave their snapshots
        size = os.fstat(fd).st_size
        prefix = ""
        if size == 0:
            prefix = _HEADER_LINE + "\n"
        else:
            first = _read_at(fd, 0, min(size, 64 * 1024)).split(b"\n", 1)[0]
            _check_header(path, first)
            if _read_at(fd, size - 1, 1) != b"\n":
                # A cut-off last line: keep it (append-only), start ours on a fresh line.
                log.warning("%s: its last line is cut off; it is kept and skipped on read", path)
                prefix = "\n"
        rows = snapshot_csv(snapshot)
        _write_all(fd, (prefix + rows).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if size == 0:
        _fsync_dir(path.parent)  # the new file's directory entry must survive a crash too
    count = rows.count("\n")
    log.info("appended %d row(s) observed at %s to %s", count, snapshot.observed_at, path)
    return count


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def repos_in(snapshots: Iterable[Snapshot]) -> list[str]:
    """The repositories a list of snapshots covers, sorted."""
    return sorted({s.repo for s in snapshots})
