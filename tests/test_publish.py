"""Publishing dated releases, against the real local GitHub stand-in, seen by real consumers."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil

import pytest

import intake_bfa
from intake_bfa.config import get_settings
from intake_bfa.errors import (
    AuthenticationError,
    ConfigError,
    DownloadError,
    ManifestError,
    PublishError,
)
from intake_bfa.http import open_url, read_body
from intake_bfa.producer.build import sha256_file
from intake_bfa.producer.github_write import GitHubWriter
from intake_bfa.producer.publish import publish, retention_plan
from intake_bfa.producer.release_folder import read_release_dir
from intake_bfa.resolve import resolve_version
from intake_bfa.testing.releases import SAMPLE_REPO, publish_rolling
from intake_bfa.testing.server import ReleaseServer

from .conftest import ROLLING_END, V_NEW, V_OLD

TOKEN = "ghp_publishertoken0123456789"


@pytest.fixture
def gh(monkeypatch):
    """A token-protected server with an empty SAMPLE_REPO; consumers point at it anonymously."""
    with ReleaseServer(token=TOKEN) as srv:
        srv.add_repo(SAMPLE_REPO)
        monkeypatch.setenv("BFA_API_URL", srv.api_url)
        monkeypatch.setenv("BFA_TTL", "0")  # consumers re-resolve "latest" on every call
        yield srv


def pub(release_dir, **kwargs):
    return publish(release_dir, settings=get_settings(token=TOKEN), **kwargs)


def versions() -> list[str]:
    return [v.version for v in intake_bfa.list_versions()]


def uploads(srv) -> list[str]:
    """Asset names POSTed to the uploads origin, in order."""
    return [r.path.split("name=")[1] for r in srv.requests if r.origin == "uploads"]


def release(srv, tag: str) -> dict:
    writer = GitHubWriter(get_settings(token=TOKEN))
    return next(r for r in writer.list_releases() if r["tag_name"] == tag)


def test_publish_is_seen_by_consumers_with_identical_bytes(gh, samples):
    folder = samples.dated(V_NEW)
    local = read_release_dir(folder)
    report = pub(folder)
    assert report.tag == f"data-{V_NEW}" and report.created and not report.noop
    assert report.uploaded == list(local.assets) == report.verified
    assert report.uploaded[-1] == "manifest.json" and uploads(gh)[-1] == "manifest.json"
    assert report.html_url.endswith(f"/releases/tag/data-{V_NEW}") and report.release_id
    assert gh.tags(SAMPLE_REPO) == [f"data-{V_NEW}"]

    (info,) = intake_bfa.list_versions()
    assert (info.version, info.latest, info.layout) == (V_NEW, True, "dated")
    assert info.coverage_end == local.manifest["coverage"]["end"]
    assert info.rows == local.manifest["datasets"]["daily_availability"]["rows"]
    for dataset in ("symbols", "volume_rankings"):
        got = intake_bfa.local_path(dataset)
        assert sha256_file(got) == sha256_file(folder / got.name)
    rel = release(gh, f"data-{V_NEW}")
    assert rel["name"].startswith(f"Binance futures availability {V_NEW}")
    assert "bfa-metadata" in rel["body"] and "Synthetic" in rel["body"]


def test_failed_publish_leaves_a_draft_then_resumes(gh, samples, monkeypatch):
    pub(samples.dated(V_OLD))
    assert resolve_version("latest") == V_OLD
    monkeypatch.setenv("BFA_RETRIES", "2")
    # An outage of the uploads origin outlasting the retry budget (2 attempts).
    gh.inject("uploads", r"name=symbols\.parquet", "status", status=502, times=2)
    gh.clear_requests()
    with pytest.raises(DownloadError) as info:
        pub(samples.dated(V_NEW))
    assert info.value.status == 502 and TOKEN not in str(info.value)
    first = uploads(gh)
    done = [
        r.path.split("name=")[1] for r in gh.requests if r.origin == "uploads" and r.status == 201
    ]
    assert "symbols.parquet" in first and "manifest.json" not in first and done
    draft = release(gh, f"data-{V_NEW}")
    assert draft["draft"] and sorted(a["name"] for a in draft["assets"]) == sorted(done)
    # Users see nothing of it: same versions, same latest, even those whose token sees drafts.
    assert versions() == [V_OLD] and resolve_version("latest") == V_OLD
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert versions() == [V_OLD] and resolve_version("latest") == V_OLD
    monkeypatch.delenv("GITHUB_TOKEN")
    assert gh.tags(SAMPLE_REPO) == [f"data-{V_OLD}"]

    gh.clear_requests()  # the outage is over
    report = pub(samples.dated(V_NEW))
    assert not report.created and report.release_id == draft["id"]
    assert sorted(report.skipped) == sorted(done)
    assert set(uploads(gh)).isdisjoint(done) and uploads(gh)[-1] == "manifest.json"
    assert sorted(report.uploaded + report.skipped) == sorted(
        read_release_dir(samples.dated(V_NEW)).assets
    )
    assert versions() == [V_NEW, V_OLD] and resolve_version("latest") == V_NEW
    assert len(intake_bfa.read("symbols")) > 0


def test_cut_uploads_and_lost_answers_are_retried(gh, samples):
    gh.inject("uploads", r"name=daily_availability", "reset", after_bytes=50_000)
    gh.inject("uploads", r"name=symbols", "lost_response", status=502)
    gh.inject("api", r"/releases$", "lost_response", status=504)  # the POST creating the draft
    report = pub(samples.dated(V_NEW))
    assert versions() == [V_NEW] and report.created
    creates = [r.status for r in gh.requests if r.method == "POST" and r.origin == "api"]
    assert creates == [504, 422]  # the retry found the draft its first attempt had made
    statuses = {}
    for rec in gh.requests:
        if rec.origin == "uploads":
            statuses.setdefault(rec.path.split("name=")[1], []).append(rec.status)
    assert statuses["daily_availability.parquet"] == [499, 201]
    assert statuses["symbols.parquet"] == [502, 422]  # stored the first time: kept, not re-sent
    assert not [r for r in gh.requests if r.method == "DELETE"]
    assert "symbols.parquet" in report.verified


def test_republishing_is_a_noop_and_changes_are_refused(gh, samples, tmp_path):
    folder = samples.dated(V_NEW)
    pub(folder)
    gh.clear_requests()
    again = pub(folder)
    assert (
        again.noop
        and again.uploaded == []
        and again.skipped == list(read_release_dir(folder).assets)
    )
    assert {r.method for r in gh.requests} == {"GET"}

    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    manifest = json.loads((changed / "manifest.json").read_text())
    manifest["note"] = "rebuilt with other bytes"
    (changed / "manifest.json").write_text(json.dumps(manifest))
    gh.clear_requests()
    with pytest.raises(PublishError, match="immutable") as info:
        pub(changed)
    assert info.value.differ == ["manifest.json"]
    assert {r.method for r in gh.requests} == {"GET"}
    got = intake_bfa.local_path("symbols", V_NEW)
    assert sha256_file(got) == sha256_file(folder / "symbols.parquet")


def test_retention_keeps_recent_and_month_ends(gh, samples):
    stub = {"manifest.json": b"{}"}
    old = [
        "2021-05-10",
        "2021-05-31",
        "2021-06-15",
        "2021-06-20",
        "2021-06-25",
        V_OLD,
        "2021-06-30",
    ]
    for version in old:
        gh.add_release(SAMPLE_REPO, f"data-{version}", stub)
    gh.add_release(SAMPLE_REPO, "data-2021-04-01", stub, draft=True)
    gh.add_release(SAMPLE_REPO, "data-2021-04-02", stub, prerelease=True)
    gh.add_release(SAMPLE_REPO, "v1.0", stub)
    report = pub(samples.dated(V_NEW), keep_daily=3)
    doomed = ["2021-05-10", "2021-06-15", "2021-06-20", "2021-06-25"]
    assert report.deleted_releases == [f"data-{v}" for v in doomed] and report.errors == []
    left = {r["tag_name"] for r in GitHubWriter(get_settings(token=TOKEN)).list_releases()}
    kept = ["2021-05-31", V_OLD, "2021-06-30", V_NEW, "2021-04-01", "2021-04-02"]
    assert left == {f"data-{v}" for v in kept} | {"v1.0"}
    assert not {f"data-{v}" for v in doomed} & set(gh.tags(SAMPLE_REPO))
    assert f"data-{V_NEW}" in gh.tags(SAMPLE_REPO)


def test_retention_plan():
    days = [f"2021-0{m}-{d:02d}" for m in (5, 6) for d in (1, 10, 20)]
    assert retention_plan(days, keep_daily=2, keep_month_ends=True) == days[:2] + days[3:4]
    assert retention_plan(days, keep_daily=2, keep_month_ends=False) == days[:4]
    assert retention_plan(days, keep_daily=0, keep_month_ends=False, protect=(days[0],)) == days[1:]


def test_rolling_refresh_serves_old_layout_clients(gh, samples):
    publish_rolling(gh, SAMPLE_REPO, samples.rolling(ROLLING_END))  # the public project's release
    folder = samples.dated(V_NEW)
    report = pub(folder, rolling=True)
    assert report.rolling_refreshed and report.errors == []
    assert report.rolling_uploaded == [  # the database last: its upload time is the version
        "volume-rankings-timeseries.parquet",
        "availability.duckdb",
        "availability.duckdb.gz",
    ]
    assert report.uploaded[-1] == "manifest.json"  # rolling uploads are reported apart
    rolling = {a["name"]: a for a in release(gh, "latest")["assets"]}
    assert rolling["availability.duckdb.gz"]["digest"][7:] == sha256_file(
        folder / "availability.duckdb.gz"
    )
    assert rolling["volume-rankings-timeseries.parquet"]["digest"][7:] == sha256_file(
        folder / "volume_rankings.parquet"
    )
    # The uncompressed database too (the publishing project's workflow resumes from it).
    raw = gzip.decompress((folder / "availability.duckdb.gz").read_bytes())
    assert rolling["availability.duckdb"]["digest"][7:] == hashlib.sha256(raw).hexdigest()
    assert rolling["availability.duckdb"]["size"] == len(raw)
    assert not [p for p in folder.iterdir() if p.name.startswith(".rolling-")]  # scratch gone

    # Publishing an older version never rolls old-layout users back.
    gh.clear_requests()
    again = pub(samples.dated(V_OLD), rolling=True)
    assert not again.rolling_refreshed and again.rolling_uploaded == []
    assert "volume-rankings-timeseries.parquet" not in uploads(gh)

    # A client of the rolling layout alone (no dated release left) gets this version's data.
    for version in (V_OLD, V_NEW):
        gh.delete_release(SAMPLE_REPO, f"data-{version}")
    (info,) = intake_bfa.list_versions()
    assert info.layout == "rolling" and info.version.startswith("rolling-")
    rows = read_release_dir(folder).manifest["datasets"]["daily_availability"]["rows"]
    assert len(intake_bfa.read("daily_availability")) == rows
    with intake_bfa.connect() as con:  # our database, not the public project's (no symbols)
        assert "symbols" in {t for (t,) in con.execute("SHOW TABLES").fetchall()}


def test_rolling_release_is_created_when_missing(gh, samples):
    report = pub(samples.dated(V_NEW), rolling=True)
    assert report.rolling_refreshed
    rel = release(gh, "latest")
    assert not rel["draft"] and {a["name"] for a in rel["assets"]} == {
        "availability.duckdb",
        "availability.duckdb.gz",
        "volume-rankings-timeseries.parquet",
    }
    gh.clear_requests()
    assert pub(samples.dated(V_NEW), rolling=True).rolling_uploaded == []  # already current
    assert uploads(gh) == []


def test_token_goes_to_api_and_uploads_only(gh, samples, monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    report = publish(samples.dated(V_NEW), verify="download", rolling=True)
    intake_bfa.read("symbols")
    auth = {o: [] for o in ("api", "uploads", "web", "objects")}
    for rec in gh.requests:
        auth[rec.origin].append(any(k.lower() == "authorization" for k in rec.headers))
    assert auth["api"] and all(auth["api"]) and auth["uploads"] and all(auth["uploads"])
    assert auth["objects"] and not any(auth["objects"])  # verification downloads included
    assert auth["web"] and not any(auth["web"])
    assert report.verified and TOKEN not in repr(report)


def test_token_is_required_and_foreign_upload_origins_refused(gh, samples, monkeypatch):
    with pytest.raises(ConfigError, match="GITHUB_TOKEN"):
        publish(samples.dated(V_NEW))
    assert gh.requests == []
    writer = GitHubWriter(get_settings(token=TOKEN, api_url="https://api.github.com"))
    ok = {"upload_url": "https://uploads.github.com/repos/o/r/releases/1/assets{?name,label}"}
    assert writer.upload_url(ok, "a b.parquet").endswith("/releases/1/assets?name=a%20b.parquet")
    for elsewhere in ("https://objects.example.com/x{?name}", "http://uploads.github.com/x"):
        with pytest.raises(DownloadError, match="refusing"):
            writer.upload_url({"upload_url": elsewhere}, "a")


def test_catalog_and_release_notes_are_published(gh, samples, tmp_path):
    folder = tmp_path / "release"
    shutil.copytree(samples.dated(V_NEW), folder)
    (folder / "catalog.yaml").write_text("version: 2\n")
    (folder / "RELEASE_NOTES.md").write_text("Fixed the 2021-06 gap.\n")
    report = pub(folder)
    assert report.uploaded[-2:] == ["catalog.yaml", "manifest.json"]
    rel = release(gh, f"data-{V_NEW}")
    assert rel["body"].startswith("Fixed the 2021-06 gap.\n\n<!-- bfa-metadata: ")
    (folder / "symbols.parquet").write_bytes(b"not what the manifest says")
    with pytest.raises(ManifestError, match="rebuild"):
        pub(folder)


def test_release_listing_follows_pagination(gh):
    for i in range(205):
        gh.add_release(SAMPLE_REPO, f"t{i}", {})
    gh.add_release(SAMPLE_REPO, "a-draft", {}, draft=True)
    gh.clear_requests()
    listed = GitHubWriter(get_settings(token=TOKEN)).list_releases()
    assert len(listed) == 206 and "a-draft" in {r["tag_name"] for r in listed}
    assert [r.path.rsplit("page=", 1)[-1] for r in gh.requests][1:] == ["2", "3"]


def test_transport_sends_bodies_and_the_token_only_where_allowed(gh, tmp_path):
    """http.open_url with a method and a body: JSON bytes, a streamed file, token origins."""
    settings = get_settings(token=TOKEN)
    releases = f"{settings.api_url}/repos/{SAMPLE_REPO}/releases"
    json_type = {"Content-Type": "application/json"}
    fields = json.dumps({"tag_name": "t1", "draft": True}).encode()
    resp = open_url(releases, settings, method="POST", data=fields, headers=json_type, ok=(201,))
    rel = json.loads(read_body(resp, releases))
    assert rel["tag_name"] == "t1" and rel["draft"]

    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 9000)  # 2.2 MiB: several 1 MiB pieces
    url = rel["upload_url"].split("{")[0] + "?name=blob.bin"
    origins = (settings.api_origin, gh.uploads_url)
    gh.clear_requests()
    # By default the token goes to the API origin alone.
    with pytest.raises(AuthenticationError):
        open_url(url, settings, method="POST", data=b"x", ok=(201,))
    with blob.open("rb") as fh:
        resp = open_url(url, settings, method="POST", data=fh, ok=(201,), token_origins=origins)
    asset = json.loads(read_body(resp, url))
    assert asset["size"] == blob.stat().st_size
    assert asset["digest"] == f"sha256:{sha256_file(blob)}"
    refused, stored = gh.requests
    assert (refused.status, stored.status) == (401, 201)
    assert "Authorization" not in refused.headers and stored.headers["Authorization"]
    assert stored.headers["Content-Length"] == str(blob.stat().st_size)
    assert stored.headers["Content-Type"] == "application/octet-stream"
    assert "Transfer-Encoding" not in stored.headers

    # Bodiless requests follow redirects; the token stays on the origins allowed.
    gh.clear_requests()
    octets = {"Accept": "application/octet-stream"}
    resp = open_url(asset["url"], settings, headers=octets, ok=(200,), token_origins=origins)
    assert read_body(resp, asset["url"]) == blob.read_bytes()
    assert [r.origin for r in gh.requests] == ["api", "objects"]
    assert "Authorization" not in gh.requests[1].headers

    # A request with a body is sent once, never redirected: the 3xx is its answer.
    gh.inject("api", "/releases$", "status", status=307, headers={"Location": releases})
    gh.clear_requests()
    with pytest.raises(DownloadError) as info:
        open_url(releases, settings, method="POST", data=fields, headers=json_type, ok=(201,))
    assert info.value.status == 307 and len(gh.requests) == 1
    assert str(info.value).startswith(f"POST {releases} answered HTTP 307")


def test_writer_errors_carry_publisher_advice(gh):
    writer = GitHubWriter(get_settings(token=TOKEN))
    rel = writer.create_release({"tag_name": "t1", "draft": True})
    gh.inject("api", r"/releases/\d+$", "status", status=403)
    with pytest.raises(DownloadError, match=r"PATCH .* 403.*contents: write") as info:
        writer.update_release(rel["id"], {"body": "x"})
    assert not info.value.context["retryable"] and TOKEN not in str(info.value)
    gh.inject("api", r"/releases/\d+$", "status", status=401)
    with pytest.raises(AuthenticationError, match="set a valid GITHUB_TOKEN"):
        writer.get_release(rel["id"])
