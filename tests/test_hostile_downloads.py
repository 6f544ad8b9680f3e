"""Hostile and unlucky downloads (issue 15, items 3, 4 and 6): real server faults, real disks.

An over-long or endless body stops at the published size and moves on to the next URL; a
verified download survives a decompression that fails for lack of room; what a killed
step leaves behind is cleaned the next time its file is touched; and the messages name
the real cause: damage in transit vs a replaced rolling release, a download host's 429
vs GitHub's API rate limit, sizes next to sizes.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import intake_bfa
from intake_bfa.cache.layout import CacheLayout, read_sidecar, sidecar_path, temp_file
from intake_bfa.config import get_settings
from intake_bfa.errors import DownloadError, IntegrityError, RateLimitError
from intake_bfa.fetch import CHUNK, part_path
from intake_bfa.resolve import get_manifest, pin
from intake_bfa.testing.server import ReleaseServer

from .conftest import ROLLING_REPO, ROOT, V_OLD, run_cli
from .test_cache_errors import one_error_line, small_disk, temp_files

SYMBOLS = "symbols.parquet"
GZ = "availability.duckdb.gz"
DB = "availability.duckdb"


class PartWatch:
    """A progress callback that records how large ``<dest>.part`` ever got.

    It stops a runaway download itself (AssertionError past ``size`` + one chunk) so
    that, without the cap, these tests fail instead of filling the disk.
    """

    def __init__(self, dest: Path, size: int) -> None:
        self.part, self.size, self.largest = part_path(dest), size, 0

    def set_size(self, size) -> None:
        pass

    def relative_update(self, inc: int = 1) -> None:
        try:
            self.largest = max(self.largest, self.part.stat().st_size)
        except FileNotFoundError:
            return
        assert self.largest <= self.size + CHUNK, f".part grew to {self.largest} bytes"


def dated_symbols(published):
    """Manifest of V_OLD cached; its symbols entry and cache path."""
    settings = get_settings()
    entry = get_manifest(settings, V_OLD).datasets["symbols"]
    published.clear_requests()
    return entry, CacheLayout(settings).file_path(V_OLD, SYMBOLS)


def version_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != "manifest.json")


# --- item 3: a body longer than the published size ---------------------------------------------


def test_an_endless_body_stops_at_the_published_size(published):
    entry, dest = dated_symbols(published)
    published.inject("objects", r".*", "long_body", after_bytes=0, times=20)
    watch = PartWatch(dest, entry.size)
    with pytest.raises(IntegrityError) as info:
        intake_bfa.local_path("symbols", V_OLD, callback=watch)
    assert watch.largest <= entry.size  # not even one chunk past it
    lines = str(info.value).splitlines()
    assert lines[0].startswith(f"size mismatch for {SYMBOLS}"), lines
    assert lines[1].strip() == f"expected: {entry.size} bytes", lines
    assert lines[2].strip().startswith("actual:") and "or more" in lines[2], lines
    assert info.value.expected == entry.size and info.value.actual > entry.size
    # Wrong bytes are not asked for again from the same URL, and nothing is left.
    assert published.count("objects", "/assets/") == 1
    assert version_files(dest.parent) == []


def test_an_over_long_announced_body_is_refused_before_reading(published):
    entry, dest = dated_symbols(published)
    published.inject("objects", r".*", "long_body", after_bytes=300 << 20)
    watch = PartWatch(dest, entry.size)
    with pytest.raises(IntegrityError) as info:
        intake_bfa.local_path("symbols", V_OLD, callback=watch)
    assert watch.largest == 0
    assert f"actual:   {entry.size + (300 << 20)} bytes (announced" in str(info.value)
    assert version_files(dest.parent) == []


def test_an_endless_primary_falls_back_to_the_mirror(published, samples, monkeypatch):
    entry, dest = dated_symbols(published)
    with ReleaseServer() as mirror:
        mirror.add_release(
            "mirror/bucket", f"data-{V_OLD}", {SYMBOLS: samples.dated(V_OLD) / SYMBOLS}
        )
        template = mirror.web_url + "/mirror/bucket/releases/download/{tag}/{asset}"
        monkeypatch.setenv("BFA_MIRRORS", template)
        published.inject("objects", r".*", "long_body", after_bytes=0, times=20)
        watch = PartWatch(dest, entry.size)
        path = intake_bfa.local_path("symbols", V_OLD, callback=watch)
        assert path.read_bytes() == (samples.dated(V_OLD) / SYMBOLS).read_bytes()
        assert watch.largest <= entry.size
        assert published.count("objects", "/assets/") == 1
        assert mirror.count("objects", "/assets/") == 1
    assert version_files(dest.parent) == sorted([SYMBOLS, SYMBOLS + ".sha256"])


def test_a_size_mismatch_prints_sizes_on_both_lines(published):
    entry, _ = dated_symbols(published)
    published.inject("objects", r".*", "long_body", after_bytes=10)
    line = one_error_line(run_cli("fetch", "symbols", "--data-version", V_OLD))
    out = run_cli("fetch", "symbols", "--data-version", V_OLD)  # the fault is used up
    assert out.returncode == 0, out.stderr
    assert f"size mismatch for {SYMBOLS}" in line
    assert f"expected: {entry.size} bytes" in line and f"actual:   {entry.size + 10} bytes" in line
    assert entry.sha256 not in line


# --- item 4: a verified download outlives the steps after it -----------------------------------


def rolling_paths():
    settings = get_settings()
    manifest = pin("latest", settings)
    layout = CacheLayout(settings)
    return manifest, layout.file_path(manifest.version, GZ), layout.file_path(manifest.version, DB)


def test_a_full_disk_while_decompressing_keeps_the_verified_download(rolling, tmp_path):
    disk = tmp_path / "small"
    cache = disk / "cache"
    env = {"BFA_CACHE_DIR": str(cache)}
    with small_disk(disk, "3m"):  # the 0.8 MB .gz fits, the 4 MB database does not
        line = one_error_line(run_cli("fetch", "availability_db", env=env))
        assert f"no space left in cache folder {cache}" in line, line
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("BFA_CACHE_DIR", str(cache))
            _, gz, db = rolling_paths()
        assert gz.is_file() and read_sidecar(gz) == (rolling_sha(gz), gz.stat().st_size)
        assert not db.exists() and temp_files(cache) == []
        rolling.clear_requests()
        again = one_error_line(run_cli("fetch", "availability_db", env=env))
        assert "no space left" in again
        assert rolling.count("objects") == 0  # nothing downloaded again
        assert gz.is_file() and temp_files(cache) == []
        assert _mount_ok("-o", "remount,size=16m", disk)
        out = run_cli("fetch", "availability_db", env=env)
        assert out.returncode == 0, out.stderr
        assert rolling.count("objects") == 0
        assert db.is_file() and not gz.exists() and not sidecar_path(gz).exists()


def rolling_sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mount_ok(*args) -> bool:
    return subprocess.run(["mount", *map(str, args)], capture_output=True).returncode == 0


def test_a_file_size_limit_while_decompressing_keeps_the_verified_download(rolling, cache_dir):
    limit = 2 << 20  # the 0.8 MB .gz fits, the 4 MB database does not

    def limited() -> None:  # in the child, before exec
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed

    out = subprocess.run(
        [sys.executable, "-m", "intake_bfa.cli", "fetch", "availability_db"],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
        timeout=120,
        preexec_fn=limited,
    )
    line = one_error_line(out)
    assert "file-size limit" in line and DB in line, line
    _, gz, db = rolling_paths()
    assert gz.is_file() and read_sidecar(gz) == (rolling_sha(gz), gz.stat().st_size)
    assert not db.exists() and temp_files(cache_dir) == []
    rolling.clear_requests()
    assert intake_bfa.local_path("availability_db") == db
    assert rolling.count("objects") == 0  # the kept .gz was decompressed, not fetched again


STALL = textwrap.dedent(
    """
    import sys, time
    import intake_bfa

    class Stall:
        # Progress of the download, then of decompression: stop for good in the second.
        phases = 0
        def set_size(self, size):
            self.phases += 1
        def relative_update(self, inc=1):
            if self.phases >= 2:
                print("decompressing", flush=True)
                time.sleep(600)

    intake_bfa.local_path("availability_db", callback=Stall())
    """
)


def test_leftovers_of_a_killed_decompress_are_cleaned_on_the_next_touch(rolling, cache_dir):
    proc = subprocess.Popen(
        [sys.executable, "-c", STALL],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
        cwd=ROOT,
    )
    try:
        assert proc.stdout.readline().strip() == "decompressing"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    manifest, gz, db = rolling_paths()
    (left,) = temp_files(cache_dir)
    assert left.parent == db.parent and left.name.startswith(f".{DB}.") and left.stat().st_size
    # Also what a killed derive leaves (named as atomic writes name them), and a temporary
    # file of another file, which this read must not touch.
    layout = CacheLayout(get_settings())
    daily = layout.file_path(manifest.version, "daily_availability.parquet")
    derived = temp_file(daily)
    derived.write_bytes(b"PAR1 half a file")
    derived_sidecar = temp_file(sidecar_path(daily))
    other = temp_file(layout.file_path(manifest.version, "volume-rankings-timeseries.parquet"))
    rolling.clear_requests()
    assert len(intake_bfa.read("daily_availability")) > 0
    assert rolling.count("objects") == 0  # the verified .gz was kept and used
    assert temp_files(cache_dir) == [other]
    assert not left.exists() and not derived.exists() and not derived_sidecar.exists()
    assert db.is_file() and daily.is_file() and not gz.exists()


def test_a_sidecar_without_its_file_is_removed_when_the_file_is_touched(rolling):
    _, gz, db = rolling_paths()
    gz.parent.mkdir(parents=True, exist_ok=True)
    # What the old decompress left: the .gz deleted, its sidecar still there.
    sidecar_path(gz).write_text(f"{'0' * 64} 3\n")
    rolling.inject("objects", r".*", "status", status=404)
    with pytest.raises(DownloadError):
        intake_bfa.local_path("availability_db")
    assert not sidecar_path(gz).exists() and not gz.exists()
    assert intake_bfa.local_path("availability_db") == db  # and it downloads cleanly after


def test_a_download_damaged_on_disk_is_removed_alone(rolling):
    from intake_bfa.fetch import asset_urls, download

    settings = get_settings()
    manifest, gz, db = rolling_paths()
    entry = manifest.datasets["availability_db"]
    urls = asset_urls(settings, manifest, GZ, entry.urls)
    download(urls, gz, settings, size=entry.size, sha256=entry.sha256)
    data = bytearray(gz.read_bytes())
    data[len(data) // 2] ^= 0xFF  # damaged after it was verified (the disk, a program)
    gz.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="no longer matches its recorded sha256"):
        intake_bfa.local_path("availability_db")
    assert not gz.exists() and not sidecar_path(gz).exists() and not db.exists()
    assert intake_bfa.local_path("availability_db") == db  # downloaded again


def test_a_published_file_that_cannot_be_decompressed_is_kept(rolling, monkeypatch):
    rolling.replace_asset(ROLLING_REPO, "latest", GZ, b"not gzip at all")
    monkeypatch.setenv("BFA_TTL", "0")
    _, gz, db = rolling_paths()
    for _ in range(2):
        with pytest.raises(IntegrityError, match="the release itself is damaged"):
            intake_bfa.local_path("availability_db")
        assert gz.read_bytes() == b"not gzip at all" and not db.exists()
    # Verified against the release: the second read did not download it again.
    assert rolling.count("objects") == 1


# --- item 6: messages that name the real cause --------------------------------------------------


def test_rolling_bytes_corrupted_in_transit_are_downloaded_again(rolling, caplog):
    pin("latest", get_settings())
    rolling.clear_requests()
    rolling.inject("objects", r".*", "corrupt", times=1)
    assert intake_bfa.local_path("availability_db").is_file()
    assert rolling.count("objects") == 2  # the damaged download and the good one
    assert rolling.count("api", "/releases") == 1  # one question: was it replaced? no
    assert "downloading availability.duckdb.gz again" in caplog.text
    assert "changed since" not in caplog.text and "re-uploaded" not in caplog.text


def test_rolling_bytes_corrupted_twice_blame_the_transit(rolling):
    rolling.inject("objects", r".*", "corrupt", times=2)
    with pytest.raises(IntegrityError) as info:
        intake_bfa.local_path("availability_db")
    message = str(info.value)
    assert message.startswith(f"sha256 mismatch for {GZ}") and "expected:" in message
    assert "corrupted in transit" in message and "same size and sha256" in message
    assert "changed since" not in message and "version='latest'" not in message


def test_a_replaced_rolling_release_is_still_blamed(rolling):
    manifest, gz, _ = rolling_paths()
    rolling.replace_asset(ROLLING_REPO, "latest", GZ, b"a newer upload")
    rolling.clear_requests()
    with pytest.raises(IntegrityError) as info:
        intake_bfa.local_path("availability_db")  # "latest" is still the resolved version
    message = str(info.value)
    assert f"changed since version {manifest.version} was resolved" in message
    assert "re-uploaded" in message and "bfa cache refresh" in message
    assert rolling.count("objects") == 1  # no pointless second download of a new file
    assert not gz.exists() and not part_path(gz).exists()


def test_a_429_from_the_download_origin_does_not_blame_the_api(published, monkeypatch):
    dated_symbols(published)
    monkeypatch.setenv("BFA_RETRIES", "1")
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_downloadorigin000000000")
    published.inject("objects", r".*", "status", status=429, times=5)
    with pytest.raises(RateLimitError) as info:
        intake_bfa.local_path("symbols", V_OLD)
    message = str(info.value)
    host = published.objects_url.removeprefix("http://")
    assert f"{host}/" in message and "HTTP 429" in message, message
    assert "GITHUB_TOKEN" not in message and "GitHub API" not in message, message
    # The API's own rate limit still gets the token advice.
    monkeypatch.setenv("BFA_CACHE_DIR", str(Path(os.environ["BFA_CACHE_DIR"]) / "cold"))
    monkeypatch.delenv("GITHUB_TOKEN")
    published.inject("api", r".*", "status", status=429, times=5)
    line = one_error_line(run_cli("fetch", "symbols"))
    assert "GitHub API rate limit" in line and "GITHUB_TOKEN" in line, line
