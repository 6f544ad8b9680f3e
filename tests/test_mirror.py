"""``bfa mirror``: a real S3 (moto's server on 127.0.0.1), the local release server, real consumers.

Buckets are versioned, so every PUT leaves a trace: a re-run that writes nothing is proven by
the version count, not assumed. Nothing of intake_bfa is mocked.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

# moto and boto3 come with the dev extra: a missing install must fail, never skip.
import boto3
import pandas as pd
import pytest

import intake_bfa
from intake_bfa.catalog import catalog_yaml, open_catalog
from intake_bfa.config import get_settings
from intake_bfa.errors import ConfigError, IntegrityError, MirrorError, MissingDependencyError
from intake_bfa.producer.mirror.source import listed_catalog
from intake_bfa.producer.mirror.store import hash_file
from intake_bfa.producer.mirror.sync import (
    MirrorStore,
    from_published,
    from_release_dir,
    mirror_target,
    sync,
    verify_mirror,
)
from intake_bfa.producer.publish import publish
from intake_bfa.producer.release_folder import read_release_dir
from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.testing.server import ReleaseServer

from .conftest import ROOT, V_NEW, V_OLD, run_cli

TOKEN = "ghp_mirrortoken000000000000"
SECRET = "s3cr3t-never-printed-0123456789"
TAG = f"data-{V_NEW}"
ASSETS = (
    "availability.duckdb.gz",
    "availability_events.parquet",
    "daily_availability.parquet",
    "symbols.parquet",
    "volume_rankings.parquet",
)


@pytest.fixture(scope="module")
def endpoint(moto_endpoint):
    return moto_endpoint


@pytest.fixture(autouse=True)
def _aws(monkeypatch, tmp_path):
    """Credentials for moto only; no host AWS configuration, no instance metadata lookups."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.setenv(name, str(tmp_path / "no-aws-config"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BFA_RETRIES", "2")


class Bucket:
    """A fresh versioned bucket (every PUT is a new version), publicly readable unless not."""

    def __init__(self, endpoint: str, *, public: bool = True):
        self.endpoint, self.name = endpoint, f"mirror-{uuid.uuid4().hex[:12]}"
        self.s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        self.s3.create_bucket(Bucket=self.name)
        self.s3.put_bucket_versioning(
            Bucket=self.name, VersioningConfiguration={"Status": "Enabled"}
        )
        if public:
            allow = {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}
            statement = allow | {"Resource": f"arn:aws:s3:::{self.name}/*"}
            policy = {"Version": "2012-10-17", "Statement": [statement]}
            self.s3.put_bucket_policy(Bucket=self.name, Policy=json.dumps(policy))

    def url(self, prefix: str = "bfa") -> str:
        return f"s3://{self.name}/{prefix}"

    def public(self, prefix: str = "bfa") -> str:
        return f"{self.endpoint}/{self.name}/{prefix}"

    def get(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=self.name, Key=key)["Body"].read()

    def head(self, key: str) -> dict:
        return self.s3.head_object(Bucket=self.name, Key=key)

    def listing(self) -> list[str]:
        return sorted(
            o["Key"] for o in self.s3.list_objects_v2(Bucket=self.name).get("Contents", [])
        )

    def puts(self) -> int:
        """Object versions ever written (delete markers apart)."""
        return len(self.s3.list_object_versions(Bucket=self.name).get("Versions", []))

    def put(self, key: str, body: bytes, **kw) -> None:
        self.s3.put_object(Bucket=self.name, Key=key, Body=body, **kw)


@pytest.fixture
def bucket(endpoint) -> Bucket:
    return Bucket(endpoint)


@pytest.fixture
def folder(samples, tmp_path) -> Path:
    """A private copy of a built release folder (sync rewrites it), with its pinned catalog."""
    out = tmp_path / "release"
    shutil.copytree(samples.dated(V_NEW), out)
    (out / "catalog.yaml").write_text(catalog_yaml(repo=SAMPLE_REPO, version=V_NEW))
    return out


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def store_for(bucket: Bucket, *, public: bool = True, **kw) -> MirrorStore:
    target = mirror_target(
        bucket.url(), endpoint_url=bucket.endpoint, public_url=bucket.public() if public else None
    )
    return MirrorStore(target, get_settings(), **kw)


def sync_dir(folder: Path, bucket: Bucket, *, public: bool = True, **kw):
    return sync(from_release_dir(folder), store_for(bucket, public=public), get_settings(), **kw)


def mirror_cli(*args: str, endpoint: str, **kw):
    return run_cli("mirror", *args, "--endpoint-url", endpoint, **kw)


def test_sync_uploads_verified_objects_and_the_folder_lists_the_mirror(folder, bucket):
    before = json.loads((folder / "manifest.json").read_text())
    report = sync_dir(folder, bucket)

    names = [*ASSETS, "catalog.yaml", "manifest.json"]
    assert [o.name for o in report.objects] == names
    assert report.names("uploaded") == names and all(o.verified == "etag" for o in report.objects)
    assert bucket.listing() == sorted(f"bfa/{TAG}/{n}" for n in names)
    for name in names:  # the bytes, and the metadata every later run relies on
        data, head = bucket.get(f"bfa/{TAG}/{name}"), bucket.head(f"bfa/{TAG}/{name}")
        assert data == (folder / name).read_bytes()
        assert head["Metadata"]["sha256"] == sha(data)
        assert head["ETag"].strip('"') == head["Metadata"]["expected-etag"]
    assert bucket.head(f"bfa/{TAG}/manifest.json")["ContentType"] == "application/json"
    # Manifest last: nothing was written after it.
    versions = bucket.s3.list_object_versions(Bucket=bucket.name)["Versions"]
    when = {v["Key"].rsplit("/", 1)[1]: v["LastModified"] for v in versions}
    assert when["manifest.json"] == max(when.values())

    # The folder lists the mirror, stays publishable, and only manifest + catalog changed.
    assert report.listed == ["catalog.yaml", "manifest.json"] and not report.published
    assert report.public_check == f"{bucket.public()}/{TAG}/symbols.parquet"
    after = json.loads((folder / "manifest.json").read_text())
    for key, entry in after["datasets"].items():
        assert entry["urls"] == [f"{bucket.public()}/{TAG}/{entry['asset']}"]
        assert {k: v for k, v in entry.items() if k != "urls"} == before["datasets"][key]
    local = read_release_dir(folder)
    assert {n: f.sha256 for n, f in local.assets.items() if n in ASSETS} == {
        e["asset"]: e["sha256"] for e in before["datasets"].values()
    }
    template = f"{bucket.public()}/{{tag}}/{{asset}}"
    assert report.template == template
    expected = catalog_yaml(repo=SAMPLE_REPO, version=V_NEW, mirrors=[template])
    assert (folder / "catalog.yaml").read_text() == expected
    cat = open_catalog(folder / "catalog.yaml")
    assert cat.metadata["pinned_version"] == V_NEW


@pytest.mark.slow  # ~3 s against moto
def test_rerun_writes_nothing_and_a_tampered_object_is_replaced(folder, bucket):
    sync_dir(folder, bucket)
    writes = bucket.puts()
    again = sync_dir(folder, bucket)
    assert again.names("unchanged") == [o.name for o in again.objects] and not again.listed
    assert {o.verified for o in again.objects} == {"etag"}
    assert bucket.puts() == writes  # not a single PUT

    # A run that died half way (two files and the manifest missing) is resumed.
    for name in ("daily_availability.parquet", "symbols.parquet", "manifest.json"):
        bucket.s3.delete_object(Bucket=bucket.name, Key=f"bfa/{TAG}/{name}")
    resumed = sync_dir(folder, bucket)
    assert resumed.names("uploaded") == [
        "daily_availability.parquet",
        "symbols.parquet",
        "manifest.json",
    ]
    assert len(resumed.names("unchanged")) == 4 and bucket.puts() == writes + 3

    # A foreign overwrite without our metadata, and one copying it (same size, other bytes).
    key = f"bfa/{TAG}/symbols.parquet"
    good = bucket.get(key)
    bucket.put(key, b"not parquet")
    meta = bucket.head(f"bfa/{TAG}/volume_rankings.parquet")["Metadata"]
    vr = bucket.get(f"bfa/{TAG}/volume_rankings.parquet")
    bad = bytes([vr[0] ^ 0xFF]) + vr[1:]
    bucket.put(f"bfa/{TAG}/volume_rankings.parquet", bad, Metadata=meta)
    fixed = sync_dir(folder, bucket)
    assert fixed.names("replaced") == [
        "symbols.parquet",
        "volume_rankings.parquet",
        "manifest.json",
    ]
    assert bucket.get(key) == good and bucket.get(f"bfa/{TAG}/volume_rankings.parquet") == vr
    # The manifest went away while files changed, and came back last.
    markers = bucket.s3.list_object_versions(Bucket=bucket.name).get("DeleteMarkers", [])
    manifest_deletes = [m for m in markers if m["Key"].endswith("manifest.json")]
    assert len(manifest_deletes) == 2  # the one above, and the sync's own

    # Asked to, every object is read back and hashed.
    slow = sync_dir(folder, bucket, verify="download")
    assert {o.verified for o in slow.objects} == {"download"}


def test_dry_run_writes_nothing_anywhere(folder, bucket):
    original = {p.name: p.read_bytes() for p in folder.iterdir()}
    report = sync_dir(folder, bucket, dry_run=True)
    assert report.dry_run and report.names("uploaded") == [o.name for o in report.objects]
    assert report.listed == ["catalog.yaml", "manifest.json"]
    assert bucket.listing() == [] and bucket.puts() == 0
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == original


def test_another_build_of_the_version_is_refused_unless_forced(folder, samples, bucket, tmp_path):
    sync_dir(folder, bucket)
    other = tmp_path / "other"  # the older sample's files, labelled as the same version
    shutil.copytree(samples.dated(V_OLD), other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["version"] = V_NEW
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MirrorError, match="another build") as err:
        sync_dir(other, bucket)
    assert "--force" in str(err.value) and "daily_availability.parquet" in str(err.value)
    forced = sync_dir(other, bucket, force=True)
    assert "daily_availability.parquet" in forced.names("replaced")
    assert bucket.get(f"bfa/{TAG}/symbols.parquet") == (other / "symbols.parquet").read_bytes()


def test_a_bucket_consumers_cannot_read_is_caught_before_listing_it(folder, endpoint):
    private = Bucket(endpoint, public=False)
    original = (folder / "manifest.json").read_bytes()
    with pytest.raises(MirrorError, match="consumers cannot read") as err:
        sync_dir(folder, private)
    assert "release folder was left unchanged" in str(err.value)
    assert (folder / "manifest.json").read_bytes() == original
    assert f"bfa/{TAG}/manifest.json" not in private.listing()  # incomplete: no manifest


def test_multipart_uploads_are_verified_by_their_etag(bucket, tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(uuid.uuid4().bytes * (11 * 2**16))  # 11 MiB: 3 parts of 5 MiB
    size = path.stat().st_size
    digest, etag = hash_file(path, size, 5 * 2**20)
    assert etag.endswith("-3") and digest == sha(path.read_bytes())
    store = store_for(bucket, base_part_size=5 * 2**20)
    store.put(path, "bfa/big.bin", sha256=digest, size=size)
    remote = store.head("bfa/big.bin")
    assert remote.etag == etag == remote.expected_etag
    assert store.intact(remote, size, digest, download=False) == "etag"
    assert store.intact(remote, size, digest, download=True) == "download"
    assert store.intact(remote, size, "0" * 64, download=False) == ""


@pytest.mark.slow  # ~2 s against moto
def test_end_to_end_build_mirror_publish_then_consumers_fall_back(
    folder, bucket, tmp_path, monkeypatch
):
    session = "session-token-never-printed-0123"
    out = mirror_cli(
        "sync",
        "-vv",  # DEBUG: botocore would log request headers (access key id, session token)
        "--release-dir",
        str(folder),
        "--bucket",
        bucket.url(),
        "--public-url",
        bucket.public(),
        endpoint=bucket.endpoint,
        env={"AWS_SESSION_TOKEN": session},
    )
    assert out.returncode == 0, out.stderr
    assert "7 uploaded, 0 replaced, 0 unchanged" in out.stdout
    assert "now list the mirror" in out.stdout
    assert "uploading symbols.parquet" in out.stderr  # -vv is on...
    assert SECRET not in out.stdout + out.stderr and session not in out.stdout + out.stderr

    with ReleaseServer(token=TOKEN) as gh:
        gh.add_repo(SAMPLE_REPO)
        report = publish(folder, settings=get_settings(api_url=gh.api_url, token=TOKEN))
        assert report.uploaded[-1] == "manifest.json"
        monkeypatch.setenv("BFA_API_URL", gh.api_url)
        # The release's files stop downloading (its manifest still does): only the mirror is left.
        gh.inject(
            "web", r"/releases/download/.*\.(parquet|gz)$", "status", status=500, times=10_000
        )
        symbols = intake_bfa.read("symbols", version=V_NEW)
        pd.testing.assert_frame_equal(symbols, pd.read_parquet(folder / "symbols.parquet"))
        db = intake_bfa.local_path("availability_db", V_NEW)  # gzip from the mirror, verified
        assert db.stat().st_size > 0
        assert gh.count("web", "symbols.parquet") >= 1  # the release was tried first

        # A corrupted mirror object is refused, and nothing is cached.
        key = f"bfa/{TAG}/volume_rankings.parquet"
        data = bucket.get(key)
        bucket.put(key, bytes(len(data)))
        monkeypatch.setenv("BFA_CACHE_DIR", str(tmp_path / "fresh-cache"))
        with pytest.raises(IntegrityError):
            intake_bfa.local_path("volume_rankings", V_NEW)
        cached = tmp_path / "fresh-cache" / "v1" / SAMPLE_REPO / V_NEW / "volume_rankings.parquet"
        assert not cached.exists()

        # verify and status see the damage; sync repairs it.
        out = mirror_cli(
            "verify",
            "--release-dir",
            str(folder),
            "--bucket",
            bucket.url(),
            endpoint=bucket.endpoint,
        )
        assert out.returncode == 1 and "volume_rankings.parquet (wrong)" in out.stderr
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("bfa: error: ")
        out = mirror_cli(
            "sync",
            "--release-dir",
            str(folder),
            "--bucket",
            bucket.url(),
            "--public-url",
            bucket.public(),
            "--json",
            endpoint=bucket.endpoint,
        )
        assert out.returncode == 0, out.stderr
        assert [
            o["name"] for o in json.loads(out.stdout)["objects"] if o["action"] == "replaced"
        ] == ["volume_rankings.parquet", "manifest.json"]
        assert intake_bfa.local_path("volume_rankings", V_NEW).stat().st_size == len(data)
    out = mirror_cli("status", "--bucket", bucket.url(), "--json", endpoint=bucket.endpoint)
    assert json.loads(out.stdout) == [
        {
            "tag": TAG,
            "objects": len(ASSETS) + 2,  # with catalog.yaml and manifest.json
            "bytes": sum(
                p.stat().st_size
                for p in folder.iterdir()
                if p.name in (*ASSETS, "catalog.yaml", "manifest.json")
            ),
            "complete": True,
        }
    ]


def test_sync_a_published_version_then_consumers_use_the_template(
    published, samples, bucket, tmp_path, monkeypatch
):
    out = mirror_cli(
        "sync",
        "--data-version",
        "latest",
        "--bucket",
        bucket.url(),
        "--public-url",
        bucket.public(),
        endpoint=bucket.endpoint,
    )
    assert out.returncode == 0, out.stderr
    template = f"{bucket.public()}/{{tag}}/{{asset}}"
    assert f"BFA_MIRRORS='{template}'" in out.stdout and "immutable" in out.stdout
    built = samples.dated(V_NEW)
    for name in (*ASSETS, "manifest.json"):  # byte-identical to the release, manifest included
        assert bucket.get(f"bfa/{TAG}/{name}") == (built / name).read_bytes()
    cache = Path(get_settings().cache_dir)
    assert not list(cache.rglob(".mirror-*"))  # the staging folder is gone

    published.clear_requests()
    with from_published(V_NEW, get_settings()) as source:  # verify: HEADs only, no download
        report = verify_mirror(source, store_for(bucket), get_settings())
    assert report.ok and {o.action for o in report.objects} == {"ok"}
    assert published.count(None, "/releases/download/") == 0

    monkeypatch.setenv("BFA_CACHE_DIR", str(tmp_path / "consumer"))
    monkeypatch.setenv("BFA_MIRRORS", template)
    published.inject("web", r"/releases/download/.*\.parquet$", "status", status=500, times=10_000)
    df = intake_bfa.read("daily_availability", version=V_NEW, columns=["date", "symbol"])
    assert len(df) == pd.read_parquet(built / "daily_availability.parquet").shape[0]


@pytest.mark.slow  # ~4 s against moto
def test_cli_errors_are_one_line_without_secrets(folder, bucket, endpoint):
    args = ("sync", "--release-dir", str(folder))
    cases = {
        "does not exist": mirror_cli(
            *args, "--bucket", "s3://no-such-bucket-here/x", endpoint=endpoint
        ),
        "check --endpoint-url": mirror_cli(
            *args, "--bucket", bucket.url(), endpoint="http://127.0.0.1:9"
        ),
        "not a plain http(s) URL": mirror_cli(
            *args, "--bucket", bucket.url(), "--public-url", "ftp://x/y", endpoint=endpoint
        ),
    }
    for needle, out in cases.items():
        assert out.returncode == 1, (needle, out.stderr)
        assert out.stderr.startswith("bfa: error: ") and out.stderr.count("\n") == 1, out.stderr
        assert needle in out.stderr and SECRET not in out.stderr
    assert "s3://no-such-bucket-here/x" in cases["does not exist"].stderr
    both = run_cli("mirror", "sync", "--release-dir", "r", "--data-version", "latest")
    assert both.returncode == 2
    assert bucket.listing() == []


def test_configuration_is_validated():
    for bad in ("bucket", "s3://", "s3://UPPER/x", "s3://ok-bucket/a/../b", "http://x/y"):
        with pytest.raises(ConfigError):
            mirror_target(bad)
    with pytest.raises(ConfigError, match="BFA_MIRROR_BUCKET"):
        mirror_target(None)
    with pytest.raises(ConfigError):
        mirror_target("s3://ok-bucket", public_url="https://cdn/{tag}")
    t = mirror_target("s3://ok-bucket/a/b/", public_url="https://cdn.example.com/bfa/")
    assert (t.key(TAG, "x.parquet"), t.template) == (
        f"a/b/{TAG}/x.parquet",
        "https://cdn.example.com/bfa/{tag}/{asset}",
    )
    assert mirror_target("s3://ok-bucket").key(TAG, "m.json") == f"{TAG}/m.json"
    text = catalog_yaml(version=V_NEW)
    listed = listed_catalog(text, "https://m.example/{tag}/{asset}")
    assert listed == catalog_yaml(version=V_NEW, mirrors=["https://m.example/{tag}/{asset}"])
    assert listed_catalog(listed, "https://m.example/{tag}/{asset}") == listed  # idempotent


def test_missing_s3fs_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # what an uninstalled package looks like
    with pytest.raises(MissingDependencyError, match=r"intake-bfa\[mirror\]"):
        MirrorStore(mirror_target("s3://ok-bucket"), get_settings())


def test_import_and_parser_stay_light():
    code = (
        "import sys, intake_bfa, intake_bfa.cli; intake_bfa.cli.build_parser(); "
        "print(sorted(m for m in ('s3fs', 'boto3', 'botocore', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr
