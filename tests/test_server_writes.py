"""Write endpoints of the local GitHub stand-in: releases, assets, tags and uploads."""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
from urllib.parse import urlsplit

import pytest

from intake_bfa.testing.server import ReleaseServer

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BLOB = bytes(range(256)) * 8192  # 2 MiB, several server-side flushes


def call(url: str, method: str = "GET", body: bytes | None = None, headers=None, timeout=10.0):
    """One request: (status, parsed JSON body or None, headers)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        try:
            return resp.status, json.loads(raw) if raw else None, resp.headers
        except ValueError:
            return resp.status, raw, resp.headers
    finally:
        conn.close()


def api(srv, method, path, data=None, headers=AUTH):
    body = json.dumps(data).encode() if data is not None else None
    return call(srv.api_url + path, method, body, headers)


def upload(srv, release, name, data: bytes, headers=AUTH, label=None):
    base = release["upload_url"].split("{")[0]
    query = f"?name={name}" + (f"&label={label}" if label else "")
    hdrs = {**headers, "Content-Type": "application/octet-stream"}
    return call(base + query, "POST", data, hdrs)


@pytest.fixture
def srv():
    with ReleaseServer(token=TOKEN, chunk_size=64 * 1024) as server:
        server.add_repo("o/r")
        yield server


@pytest.fixture
def draft(srv):
    fields = {"tag_name": "v1", "name": "One", "body": "notes", "draft": True}
    status, rel, _ = api(srv, "POST", "/repos/o/r/releases", fields)
    assert status == 201
    return rel


def test_writes_require_the_token(srv, draft):
    rid = draft["id"]
    attempts = [
        ("POST", "/repos/o/r/releases", {"tag_name": "x"}),
        ("PATCH", f"/repos/o/r/releases/{rid}", {"draft": False}),
        ("DELETE", f"/repos/o/r/releases/{rid}", None),
        ("DELETE", "/repos/o/r/releases/assets/1", None),
        ("DELETE", "/repos/o/r/git/refs/tags/v1", None),
    ]
    for method, path, data in attempts:
        status, body, _ = api(srv, method, path, data, headers={})
        assert (status, body["message"]) == (401, "Requires authentication"), path
        status, body, _ = api(srv, method, path, data, headers={"Authorization": "Bearer nope"})
        assert (status, body["message"]) == (401, "Bad credentials"), path
    assert upload(srv, draft, "a.bin", b"abc", headers={})[0] == 401
    assert api(srv, "GET", f"/repos/o/r/releases/{rid}")[1]["draft"] is True  # untouched


def test_create_release_and_duplicate_tag(srv, draft):
    assert draft["draft"] and draft["published_at"] is None and draft["assets"] == []
    assert (draft["tag_name"], draft["name"], draft["body"]) == ("v1", "One", "notes")
    assert draft["upload_url"] == (
        f"{srv.uploads_url}/repos/o/r/releases/{draft['id']}/assets{{?name,label}}"
    )
    status, body, _ = api(srv, "POST", "/repos/o/r/releases", {"tag_name": "v1"})
    assert status == 422 and body["message"] == "Validation Failed"
    assert body["errors"] == [
        {"resource": "Release", "code": "already_exists", "field": "tag_name"}
    ]
    assert api(srv, "POST", "/repos/o/r/releases", {"name": "no tag"})[0] == 422
    assert api(srv, "POST", "/repos/o/r/releases", {"tag_name": 5})[0] == 422
    assert api(srv, "POST", "/repos/x/y/releases", {"tag_name": "v1"})[0] == 404
    status, rel, _ = api(srv, "POST", "/repos/o/r/releases", {"tag_name": "v2"})
    assert status == 201 and not rel["draft"] and rel["published_at"] and rel["name"] == "v2"
    assert srv.tags("o/r") == ["v2"]  # a draft has no tag yet
    anonymous = api(srv, "GET", "/repos/o/r/releases", headers={})[1]
    assert [r["tag_name"] for r in anonymous] == ["v2"]


def test_patch_publishes_a_draft_and_renames(srv, draft):
    path = f"/repos/o/r/releases/{draft['id']}"
    status, rel, _ = api(srv, "PATCH", path, {"body": "new", "prerelease": True})
    assert status == 200 and rel["body"] == "new" and rel["prerelease"] and rel["draft"]
    status, rel, _ = api(srv, "PATCH", path, {"draft": False, "prerelease": False, "name": "N"})
    assert status == 200 and not rel["draft"] and rel["published_at"] and rel["name"] == "N"
    assert srv.tags("o/r") == ["v1"]
    api(srv, "POST", "/repos/o/r/releases", {"tag_name": "v2"})
    status, body, _ = api(srv, "PATCH", path, {"tag_name": "v2"})
    assert status == 422 and body["errors"][0]["code"] == "already_exists"
    status, rel, _ = api(srv, "PATCH", path, {"tag_name": "v3"})
    assert status == 200 and rel["tag_name"] == "v3"
    assert api(srv, "GET", "/repos/o/r/releases/tags/v3")[1]["id"] == draft["id"]
    assert api(srv, "PATCH", "/repos/o/r/releases/999999", {"name": "x"})[0] == 404
    assert call(srv.api_url + path, "PATCH", b"{not json", AUTH)[0] == 400


def test_upload_streams_hashes_and_serves(srv, draft):
    status, asset, _ = upload(srv, draft, "big.bin", BLOB, label="Big")
    assert status == 201
    assert asset["digest"] == "sha256:" + hashlib.sha256(BLOB).hexdigest()
    assert (asset["size"], asset["name"], asset["label"]) == (len(BLOB), "big.bin", "Big")
    assert asset["state"] == "uploaded" and asset["content_type"] == "application/octet-stream"
    stored = list(srv._writes.upload_dir.iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == BLOB  # on disk, not in memory
    # A draft's asset is downloadable through the API with the token, not by its web URL.
    status, _, headers = call(asset["url"], headers={**AUTH, "Accept": "application/octet-stream"})
    assert status == 302
    status, _, _ = call(asset["browser_download_url"])
    assert status == 404
    parts = urlsplit(headers["Location"])
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", f"{parts.path}?{parts.query}")
    assert conn.getresponse().read() == BLOB
    conn.close()

    status, body, _ = upload(srv, draft, "big.bin", b"other")
    assert status == 422 and body["errors"][0] == {
        "resource": "ReleaseAsset",
        "code": "already_exists",
        "field": "name",
    }
    assert upload(srv, draft, "", b"x")[0] == 422
    gone = {"upload_url": f"{srv.uploads_url}/repos/o/r/releases/999999/assets{{?name}}"}
    assert upload(srv, gone, "a", b"x")[0] == 404
    rel = api(srv, "GET", f"/repos/o/r/releases/{draft['id']}")[1]
    assert [a["name"] for a in rel["assets"]] == ["big.bin"]


def test_delete_asset_release_and_tag(srv, draft):
    asset = upload(srv, draft, "a.txt", b"hello")[1]
    assert api(srv, "DELETE", f"/repos/o/r/releases/assets/{asset['id']}")[0] == 204
    assert api(srv, "DELETE", f"/repos/o/r/releases/assets/{asset['id']}")[0] == 404
    assert api(srv, "GET", f"/repos/o/r/releases/{draft['id']}")[1]["assets"] == []
    api(srv, "PATCH", f"/repos/o/r/releases/{draft['id']}", {"draft": False})
    assert api(srv, "GET", "/repos/o/r/git/refs/tags/v1", headers={})[1]["ref"] == "refs/tags/v1"

    assert api(srv, "DELETE", f"/repos/o/r/releases/{draft['id']}")[0] == 204
    assert api(srv, "GET", "/repos/o/r/releases/tags/v1")[0] == 404
    assert srv.tags("o/r") == ["v1"]  # GitHub keeps the tag of a deleted release
    assert api(srv, "DELETE", f"/repos/o/r/releases/{draft['id']}")[0] == 404
    assert api(srv, "DELETE", "/repos/o/r/git/refs/tags/v1")[0] == 204
    assert srv.tags("o/r") == [] and api(srv, "GET", "/repos/o/r/git/refs/tags/v1")[0] == 404
    status, body, _ = api(srv, "DELETE", "/repos/o/r/git/refs/tags/v1")
    assert status == 422 and body["message"] == "Reference does not exist"


def test_deleting_the_tag_of_a_published_release_unpublishes_it(srv):
    rel = srv.add_release("o/r", "v9", {"a": b"a"})
    assert srv.tags("o/r") == ["v9"]
    assert api(srv, "DELETE", "/repos/o/r/git/refs/tags/v9")[0] == 204
    assert api(srv, "GET", f"/repos/o/r/releases/{rel['id']}")[1]["draft"] is True
    assert api(srv, "GET", "/repos/o/r/releases", headers={})[1] == []


def test_uploads_are_recorded_on_their_origin(srv, draft):
    srv.clear_requests()
    upload(srv, draft, "a.txt", b"hello")
    (rec,) = srv.requests
    assert (rec.origin, rec.method, rec.status) == ("uploads", "POST", 201)
    assert rec.path == f"/repos/o/r/releases/{draft['id']}/assets?name=a.txt"
    assert rec.headers["Authorization"] == AUTH["Authorization"]
    assert srv.count("uploads") == 1 and srv.count("api") == 0
    assert call(srv.uploads_url + "/nothing")[0] == 404


def test_upload_faults(srv, draft):
    srv.inject("uploads", "name=a", "status", status=502)
    status, body, _ = upload(srv, draft, "a", BLOB)
    assert status == 502 and "Injected" in body["message"]

    # Cut mid-body: the client sees the connection die, nothing is stored.
    srv.inject("uploads", "name=a", "reset", after_bytes=100_000)
    with pytest.raises((ConnectionError, http.client.HTTPException, socket.timeout)):
        upload(srv, draft, "a", BLOB)
    srv.inject("uploads", "name=a", "truncate", after_bytes=10)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        upload(srv, draft, "a", BLOB)
    assert api(srv, "GET", f"/repos/o/r/releases/{draft['id']}")[1]["assets"] == []
    assert list(srv._writes.upload_dir.iterdir()) == []  # partial bodies are discarded

    # The upload is stored but its answer is lost: a retry meets its own earlier success.
    srv.inject("uploads", "name=a", "lost_response", status=502)
    assert upload(srv, draft, "a", BLOB)[0] == 502
    assert upload(srv, draft, "a", BLOB)[0] == 422
    (asset,) = api(srv, "GET", f"/repos/o/r/releases/{draft['id']}")[1]["assets"]
    assert asset["size"] == len(BLOB)
    statuses = [r.status for r in srv.requests if r.origin == "uploads"]
    assert statuses == [502, 499, 499, 502, 422]


def test_lost_response_on_api_writes(srv):
    srv.inject("api", r"/releases$", "lost_response", status=504)
    status, _, _ = api(srv, "POST", "/repos/o/r/releases", {"tag_name": "v5"})
    assert status == 504
    assert api(srv, "POST", "/repos/o/r/releases", {"tag_name": "v5"})[0] == 422
    assert api(srv, "GET", "/repos/o/r/releases/tags/v5")[0] == 200
