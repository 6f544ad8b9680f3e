"""Tests for the local GitHub Releases stand-in, over real sockets with a stdlib client."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import time
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from intake_bfa.testing.server import RecordedRequest, ReleaseServer

TOKEN = "s3cret"
DATA = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None, timeout=5.0):
    """One request, no redirect following: (status, headers, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def api(srv: ReleaseServer, path: str, **headers: str):
    status, hdrs, body = fetch(srv.api_url + path, headers=headers)
    return status, hdrs, json.loads(body) if body else None


def auth(token: str = TOKEN, scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {token}"}


@pytest.fixture
def srv():
    with ReleaseServer(token=TOKEN, chunk_size=1024) as server:
        yield server


@pytest.fixture
def rel(srv):
    return srv.add_release("owner/repo", "v1", {"data.bin": DATA, "t.csv.gz": b"x"})


def download_url(rel, index=0):
    return rel["assets"][index]["browser_download_url"]


def signed_url(srv, rel, index=0):
    status, headers, _ = fetch(download_url(rel, index))
    assert status == 302
    assert headers["Location"].startswith(srv.objects_url + "/owner/repo/assets/")
    return headers["Location"]


def test_not_started_and_stop_is_idempotent():
    server = ReleaseServer()
    with pytest.raises(RuntimeError):
        server.api_url  # noqa: B018
    server.stop()
    server.start()
    assert len({server.api_url, server.web_url, server.objects_url}) == 3
    server.stop()
    server.stop()


def test_repo_endpoint_and_404_json(srv):
    srv.add_repo("owner/empty")
    status, headers, body = api(srv, "/repos/Owner/Empty")
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    assert body["full_name"] == "owner/empty" and body["private"] is False
    assert api(srv, "/repos/owner/empty/releases")[2] == []
    for path in ("/repos/owner/nope", "/repos/owner/empty/releases/tags/v9", "/nothing/here"):
        status, _, body = api(srv, path)
        assert status == 404
        assert body == {
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest",
            "status": "404",
        }


def test_release_json_fields(srv, rel):
    asset = rel["assets"][0]
    assert rel["tag_name"] == "v1" and rel["target_commitish"] == "main"
    assert rel["url"] == f"{srv.api_url}/repos/owner/repo/releases/{rel['id']}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", rel["published_at"])
    assert asset["url"] == f"{srv.api_url}/repos/owner/repo/releases/assets/{asset['id']}"
    assert asset["digest"] == "sha256:" + hashlib.sha256(DATA).hexdigest()
    assert asset["size"] == len(DATA) and asset["state"] == "uploaded"
    assert asset["content_type"] == "application/octet-stream"
    assert rel["assets"][1]["content_type"] == "application/gzip"
    assert rel["id"] < asset["id"] < rel["assets"][1]["id"]
    nodigest = srv.add_release("owner/repo", "v0", {"a b.txt": b"hi"}, with_digest=False)
    assert nodigest["assets"][0]["digest"] is None
    assert nodigest["assets"][0]["browser_download_url"].endswith("/download/v0/a%20b.txt")
    assert api(srv, "/repos/owner/repo/releases/tags/v1")[2] == rel


def test_release_order_and_pagination(srv):
    day = datetime(2024, 1, 1, tzinfo=UTC)
    made = [
        srv.add_release("o/r", f"v{i}", {}, created_at=day.replace(day=d))
        for i, d in enumerate([3, 1, 5, 5, 2])
    ]
    expected = [made[3]["id"], made[2]["id"], made[0]["id"], made[4]["id"], made[1]["id"]]
    _, headers, body = api(srv, "/repos/o/r/releases")
    assert [r["id"] for r in body] == expected and "Link" not in headers

    base = f"{srv.api_url}/repos/o/r/releases?per_page=2"
    pages = []
    for page in (1, 2, 3):
        _, headers, body = api(srv, f"/repos/o/r/releases?per_page=2&page={page}")
        pages += [r["id"] for r in body]
        links = dict(
            (rel, url) for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', headers["Link"])
        )
        if page == 1:
            assert links == {"next": f"{base}&page=2", "last": f"{base}&page=3"}
        elif page == 2:
            assert set(links) == {"prev", "next", "last", "first"}
            assert links["first"] == f"{base}&page=1"
        else:
            assert links == {"prev": f"{base}&page=2", "first": f"{base}&page=1"}
    assert pages == expected
    assert api(srv, "/repos/o/r/releases?per_page=2&page=9")[2] == []


def test_drafts_need_the_token(srv):
    srv.add_release("o/r", "v1", {})
    draft = srv.add_release("o/r", "v2-draft", {"a": b"a"}, draft=True)
    assert draft["published_at"] is None
    for headers in ({}, auth("wrong")):
        assert [r["tag_name"] for r in api(srv, "/repos/o/r/releases", **headers)[2]] == ["v1"]
        assert api(srv, f"/repos/o/r/releases/{draft['id']}", **headers)[0] == 404
    for headers in (auth(), auth(scheme="token")):
        tags = [r["tag_name"] for r in api(srv, "/repos/o/r/releases", **headers)[2]]
        assert tags == ["v2-draft", "v1"]
    assert fetch(download_url(draft))[0] == 404


def test_latest_skips_drafts_and_prereleases(srv):
    srv.add_release("o/r", "pre", {}, prerelease=True)
    assert api(srv, "/repos/o/r/releases/latest")[0] == 404
    srv.add_release("o/r", "stable", {})
    srv.add_release("o/r", "newer-pre", {}, prerelease=True)
    srv.add_release("o/r", "newer-draft", {}, draft=True)
    assert api(srv, "/repos/o/r/releases/latest", **auth())[2]["tag_name"] == "stable"


def test_tag_id_and_assets_endpoints(srv):
    made = srv.add_release("o/r", "data 2024+1", {"a": b"a", "b": b"b"})
    status, _, body = api(srv, "/repos/o/r/releases/tags/data%202024%2B1")
    assert status == 200 and body["id"] == made["id"]
    assert api(srv, f"/repos/o/r/releases/{made['id']}")[2] == made
    assert api(srv, f"/repos/o/r/releases/{made['id']}/assets")[2] == made["assets"]
    status, headers, body = api(srv, f"/repos/o/r/releases/{made['id']}/assets?per_page=1")
    assert [a["name"] for a in body] == ["a"] and 'rel="next"' in headers["Link"]
    asset = made["assets"][1]
    assert api(srv, f"/repos/o/r/releases/assets/{asset['id']}")[2] == asset
    assert api(srv, "/repos/o/r/releases/999999")[0] == 404


def test_etag_304_and_rate_limit_accounting(srv, rel):
    path = "/repos/owner/repo/releases"
    status, headers, _ = api(srv, path)
    etag = headers["ETag"]
    assert status == 200 and re.fullmatch(r'"[0-9a-f]{40}"', etag)
    assert headers["X-RateLimit-Limit"] == "5000" and headers["X-RateLimit-Resource"] == "core"
    assert headers["X-RateLimit-Remaining"] == "4999" and headers["X-RateLimit-Used"] == "1"
    assert abs(int(headers["X-RateLimit-Reset"]) - (time.time() + 3600)) < 60

    status, headers, body = api(srv, path, **{"If-None-Match": etag})
    assert (status, body, headers["ETag"]) == (304, None, etag)
    assert headers["X-RateLimit-Remaining"] == "4998"  # anonymous 304s still count
    status, headers, _ = api(srv, path, **{"If-None-Match": f"W/{etag}"}, **auth())
    assert status == 304 and headers["X-RateLimit-Remaining"] == "4998"  # authenticated: free
    status, headers, _ = api(srv, path, **{"If-None-Match": '"other"'}, **auth())
    assert status == 200 and headers["X-RateLimit-Remaining"] == "4997"


def test_rate_limit_exhaustion():
    with ReleaseServer(rate_limit=2) as server:
        server.add_repo("o/r")
        assert [api(server, "/repos/o/r")[0] for _ in range(2)] == [200, 200]
        status, headers, body = api(server, "/repos/o/r")
        assert status == 403 and body["message"].startswith("API rate limit exceeded for")
        assert headers["X-RateLimit-Remaining"] == "0" and headers["X-RateLimit-Used"] == "2"
        assert fetch(server.web_url + "/o/r/releases/download/x/y")[0] == 404  # not rate limited


def test_browser_download_redirects_to_signed_object(srv, rel):
    location = signed_url(srv, rel)
    status, headers, body = fetch(location)
    assert status == 200 and body == DATA
    assert "sha256:" + hashlib.sha256(body).hexdigest() == rel["assets"][0]["digest"]
    assert headers["Content-Length"] == str(len(DATA)) and headers["Accept-Ranges"] == "bytes"
    assert headers["Content-Type"] == "application/octet-stream"
    assert re.fullmatch(r'"0x[0-9A-F]{16}"', headers["ETag"])
    assert headers["Last-Modified"].endswith(" GMT")
    asset = api(srv, f"/repos/owner/repo/releases/assets/{rel['assets'][0]['id']}")[2]
    assert asset["download_count"] == 1

    status, head_headers, body = fetch(location, method="HEAD")
    assert (status, body) == (200, b"") and head_headers["Content-Length"] == str(len(DATA))
    assert fetch(download_url(rel), method="HEAD")[0] == 302
    assert fetch(srv.web_url + "/owner/repo/releases/download/v1/missing")[0] == 404


def test_asset_api_with_octet_stream_accept_redirects(srv, rel):
    url = rel["assets"][0]["url"]
    status, headers, _ = fetch(url, headers={"Accept": "application/octet-stream"})
    assert status == 302 and headers["Location"].startswith(srv.objects_url)
    assert fetch(headers["Location"])[2] == DATA
    assert json.loads(fetch(url)[2])["name"] == "data.bin"


def test_ranges_and_if_range(srv, rel):
    url = signed_url(srv, rel)
    total = len(DATA)
    status, headers, body = fetch(url, headers={"Range": "bytes=10-19"})
    assert (status, body, headers["Content-Range"]) == (206, DATA[10:20], f"bytes 10-19/{total}")
    status, headers, body = fetch(url, headers={"Range": "bytes=-5"})
    assert (status, body) == (206, DATA[-5:]) and headers["Content-Length"] == "5"
    status, _, body = fetch(url, headers={"Range": f"bytes={total - 3}-"})
    assert (status, body) == (206, DATA[-3:])
    status, _, body = fetch(url, headers={"Range": f"bytes=5-{total * 2}"})
    assert (status, body) == (206, DATA[5:])
    for bad in (f"bytes={total}-", "bytes=-0"):
        status, headers, _ = fetch(url, headers={"Range": bad})
        assert status == 416 and headers["Content-Range"] == f"bytes */{total}"
    status, _, body = fetch(url, headers={"Range": "bytes=0-1,5-6"})
    assert (status, body) == (200, DATA)

    full = fetch(url)[1]
    for validator in (full["ETag"], full["Last-Modified"]):
        status, _, body = fetch(url, headers={"Range": "bytes=100-", "If-Range": validator})
        assert (status, body) == (206, DATA[100:])
    for stale in ('"0xDEADBEEF"', "Mon, 01 Jan 2001 00:00:00 GMT"):
        status, _, body = fetch(url, headers={"Range": "bytes=100-", "If-Range": stale})
        assert (status, body) == (200, DATA)


def test_signed_url_expiry_and_tampering():
    with ReleaseServer(signed_url_ttl=0.3) as server:
        made = server.add_release("owner/repo", "v1", {"a": DATA})
        url = signed_url(server, made)
        assert fetch(url)[0] == 200
        status, _, body = fetch(url.replace("signature=", "signature=0"))
        assert status == 403 and b"<Code>AccessDenied</Code>" in body
        time.sleep(0.4)
        status, headers, body = fetch(url)
        assert status == 403 and headers["Content-Type"].startswith("application/xml")
        assert b"<Code>AccessDenied</Code><Message>Request has expired</Message>" in body


def test_fault_status_with_headers_and_times(srv, rel):
    srv.inject("api", r"/releases$", "status", status=503, times=2, headers={"Retry-After": "1"})
    for _ in range(2):
        status, headers, body = api(srv, "/repos/owner/repo/releases")
        assert status == 503 and headers["Retry-After"] == "1" and "message" in body
    assert api(srv, "/repos/owner/repo/releases/tags/v1")[0] == 200  # regex did not match
    assert api(srv, "/repos/owner/repo/releases")[0] == 200  # fault used up
    srv.inject("web", "data.bin", "status", status=502)
    assert fetch(download_url(rel))[0] == 502
    with pytest.raises(ValueError):
        srv.inject("nowhere", ".", "status")


def read_all(url: str, headers=None, timeout=5.0) -> tuple[int, bytes, BaseException | None]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.request("GET", f"{parts.path}?{parts.query}", headers=headers or {})
    resp, got = conn.getresponse(), b""
    try:
        while chunk := resp.read1(65536):
            got += chunk
        error = None
    except (OSError, http.client.HTTPException) as exc:
        error = exc
    conn.close()
    return resp.status, got, error


def test_fault_reset_and_truncate(srv, rel):
    url = signed_url(srv, rel)
    srv.inject("objects", "/assets/", "reset", after_bytes=3000)
    status, got, error = read_all(url, {"Range": "bytes=100-"})
    assert status == 206 and got == DATA[100:3100] and isinstance(error, ConnectionResetError)
    srv.inject("objects", "/assets/", "truncate", after_bytes=1500)
    with pytest.raises(http.client.IncompleteRead) as info:
        fetch(url)
    assert info.value.partial == DATA[:1500] and info.value.expected == len(DATA) - 1500
    assert [r.status for r in srv.requests if r.origin == "objects"] == [206, 200]
    assert fetch(url)[2] == DATA
    asset = api(srv, f"/repos/owner/repo/releases/assets/{rel['assets'][0]['id']}")[2]
    assert asset["download_count"] == 1  # cut-short downloads are not counted


def test_fault_slow_triggers_client_timeout(srv, rel):
    url = signed_url(srv, rel)
    srv.inject("objects", "/assets/", "slow", after_bytes=2048, delay=0.5)
    status, got, error = read_all(url, timeout=0.15)
    assert status == 200 and got == DATA[:2048] and isinstance(error, TimeoutError)


def test_fault_ignore_range_expired_and_corrupt(srv, rel):
    url = signed_url(srv, rel)
    srv.inject("objects", ".", "ignore_range")
    status, headers, body = fetch(url, headers={"Range": "bytes=10-"})
    assert (status, body) == (200, DATA) and "Content-Range" not in headers
    srv.inject("objects", ".", "expired")
    status, _, body = fetch(url)
    assert status == 403 and b"Request has expired" in body
    srv.inject("objects", ".", "corrupt")
    status, _, body = fetch(url)
    assert status == 200 and len(body) == len(DATA) and body != DATA
    assert hashlib.sha256(body).hexdigest() != hashlib.sha256(DATA).hexdigest()
    assert fetch(url)[2] == DATA


def test_path_backed_asset_is_streamed_from_disk(tmp_path):
    blob = bytes(range(256)) * 4096 + b"tail"  # ~1 MiB, many chunks
    path = tmp_path / "big.parquet"
    path.write_bytes(blob)
    with ReleaseServer(chunk_size=64 * 1024) as server:
        made = server.add_release("o/r", "v1", {"big.parquet": path, "s.txt": str(path)})
        asset = made["assets"][0]
        assert asset["size"] == len(blob)
        assert asset["digest"] == "sha256:" + hashlib.sha256(blob).hexdigest()
        location = fetch(asset["browser_download_url"])[1]["Location"]
        assert fetch(location)[2] == blob
        assert fetch(location, headers={"Range": "bytes=70000-70009"})[2] == blob[70000:70010]
        # Same length, new content: served bytes come from disk at request time.
        path.write_bytes(blob[::-1])
        assert fetch(location)[2] == blob[::-1]


def test_replace_asset_is_a_new_upload(srv, rel):
    old = rel["assets"][0]
    old_location = signed_url(srv, rel)
    new = srv.replace_asset("owner/repo", "v1", "data.bin", b"new content")
    assert new["id"] > old["id"] and new["name"] == old["name"]
    assert new["digest"] == "sha256:" + hashlib.sha256(b"new content").hexdigest()
    assert new["updated_at"] > old["updated_at"]
    assert new["browser_download_url"] == old["browser_download_url"]
    assert fetch(old_location)[0] == 404  # the old blob is gone
    assert fetch(signed_url(srv, rel))[2] == b"new content"
    assert api(srv, "/repos/owner/repo/releases/tags/v1")[2]["assets"][0]["id"] == new["id"]
    with pytest.raises(KeyError):
        srv.replace_asset("owner/repo", "v1", "missing", b"")
    srv.delete_release("owner/repo", "v1")
    assert api(srv, "/repos/owner/repo/releases/tags/v1")[0] == 404
    with pytest.raises(KeyError):
        srv.delete_release("owner/repo", "v1")


def test_request_recording(srv, rel):
    srv.clear_requests()
    api(srv, "/repos/owner/repo/releases?per_page=5", **{"X-Probe": "yes"})
    fetch(signed_url(srv, rel))
    api(srv, "/repos/owner/nope")
    assert [(r.origin, r.method, r.status) for r in srv.requests] == [
        ("api", "GET", 200),
        ("web", "GET", 302),
        ("objects", "GET", 200),
        ("api", "GET", 404),
    ]
    first = srv.requests[0]
    assert (
        isinstance(first, RecordedRequest) and first.path == "/repos/owner/repo/releases?per_page=5"
    )
    assert first.headers["X-Probe"] == "yes"
    assert srv.count() == 4 and srv.count("api") == 2 and srv.count(path_contains="/assets/") == 1
    with pytest.raises(AttributeError):
        first.status = 500  # type: ignore[misc]
    srv.clear_requests()
    assert srv.requests == []
