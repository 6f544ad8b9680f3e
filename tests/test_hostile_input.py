"""Hostile and malformed input: a typed error naming the field and the file or URL, never a
traceback, a hang or a file name the disk refuses.

Each reproduction runs through the real parts: the local release server (its ``"body"``
fault answers any JSON a real server never would), manifests and catalogs on disk, the real
CLI. Then hypothesis generates release JSON, manifests, catalogs, ``bfa://`` paths and
version strings: each parses or raises a :class:`~intake_bfa.errors.BfaError`, nothing else,
within a time bound (a few examples by default, many more in the slow group).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import intake_bfa
from intake_bfa.catalog import catalog_dict, open_catalog
from intake_bfa.config import get_settings
from intake_bfa.derive import DERIVED_SQL
from intake_bfa.errors import (
    BfaError,
    CatalogError,
    DownloadError,
    ManifestError,
    VersionNotFoundError,
)
from intake_bfa.fs import BfaFileSystem
from intake_bfa.http import open_url
from intake_bfa.manifest import (
    MAX_ASSET_NAME_BYTES,
    check_asset_name,
    check_version,
    load_manifest,
    parse_manifest,
)
from intake_bfa.releases import DATED_TAG_RE, parse_release
from intake_bfa.resolve import get_manifest, resolve_version
from intake_bfa.schema import DATASETS, DERIVABLE
from intake_bfa.testing.releases import SAMPLE_REPO
from intake_bfa.untrusted import check_depth, load_yaml, loads_json

from .conftest import run_cli, run_cli_process

V = "2026-11-20"
V2 = "2026-11-21"
LIST_PATH = r"/releases\?"
DEEP_JSON = "[" * 200_000 + "]" * 200_000


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_doc(version: str = V, **datasets) -> dict:
    return {"schema_version": 1, "version": version, "layout": "dated", "datasets": datasets}


def publish(server, doc, version: str = V, **assets: bytes) -> dict:
    """A dated release whose manifest is ``doc`` (a dict, or raw bytes), plus ``assets``."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return server.add_release(SAMPLE_REPO, f"data-{version}", {"manifest.json": body, **assets})


@pytest.fixture
def api(server, monkeypatch):
    """The local release server, empty; BFA_API_URL points at it."""
    monkeypatch.setenv("BFA_API_URL", server.api_url)
    return server


def assert_clean_failure(out, *needles: str) -> None:
    """A CLI run that failed with a one-line typed error (exit 1), no traceback."""
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr, out.stderr
    assert "bfa: error:" in out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


# --- manifests: derived_from ------------------------------------------------------------------


@pytest.mark.parametrize(
    "datasets",
    [
        {"symbols": {"derived_from": "symbols"}},
        {
            "symbols": {"derived_from": "daily_availability"},
            "daily_availability": {"derived_from": "symbols"},
        },
    ],
    ids=["itself", "each-other"],
)
def test_a_derived_from_cycle_is_refused_instead_of_waiting_on_its_own_lock(api, datasets):
    publish(api, manifest_doc(**datasets))
    # A real process: before the fix it blocked on its own lock file for ever.
    out = run_cli_process("fetch", "symbols", "--data-version", V, timeout=60)
    assert_clean_failure(out, "derived_from", "manifest.json")


def test_derived_from_a_parquet_table_is_refused_before_duckdb_sees_it(api):
    table = b"PAR1 not really"
    doc = manifest_doc(
        volume_rankings={"asset": "volume_rankings.parquet", "size": len(table)},
        daily_availability={"derived_from": "volume_rankings"},
    )
    publish(api, doc, **{"volume_rankings.parquet": table})
    out = run_cli("fetch", "daily_availability", "--data-version", V)
    assert_clean_failure(out, "derived_from", "'volume_rankings'", "availability_db")


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"asset": "symbols.parquet", "size": "12"}, "size"),
        ({"asset": "symbols.parquet", "size": True}, "size"),
        ({"asset": "symbols.parquet", "size": -1}, "size"),
        ({"asset": "symbols.parquet", "size": 1, "rows": 1.5}, "rows"),
        ({"asset": "symbols.parquet", "size": 1, "columns": ["date"]}, "columns"),
        ({"asset": "symbols.parquet", "size": 1, "coverage": {"start": "2026-02-30", "end": V}}, "coverage.start"),
        ({"asset": "symbols.parquet", "size": 1, "coverage": {"start": V, "end": "2026-01-01"}}, "coverage"),
        ({"asset": "symbols.parquet", "sha256": "a" * 64 + "\n"}, "sha256"),
        ({"asset": 7, "size": 1}, "asset"),
        ({"derived_from": ["availability_db"]}, "derived_from"),
        ({"derived_from": "availability_db", "asset": "symbols.parquet", "size": 1}, "derived_from"),
    ],
)  # fmt: skip
def test_every_manifest_field_is_type_and_range_checked(entry, field):
    doc = manifest_doc(
        availability_db={"asset": "availability.duckdb.gz", "size": 1}, symbols=entry
    )
    with pytest.raises(ManifestError, match=rf"m\.json: dataset 'symbols'.*{field}"):
        parse_manifest(doc, source="m.json")


def test_the_derivable_tables_are_the_ones_with_sql():
    assert set(DERIVABLE) == set(DERIVED_SQL)
    assert all(DATASETS[name].kind == "table" for name in DERIVABLE)


def test_volume_rankings_cannot_be_derived():
    doc = manifest_doc(
        availability_db={"asset": "availability.duckdb.gz", "size": 1},
        volume_rankings={"derived_from": "availability_db"},
    )
    with pytest.raises(ManifestError, match="volume_rankings cannot be computed locally"):
        parse_manifest(doc, source="m.json")


# --- the release list and the release asked for ---------------------------------------------


def good_release(server) -> dict:
    """The API's JSON of a valid dated release (V2), to corrupt."""
    return server.add_release(
        "someone/else", f"data-{V2}", {"manifest.json": b"{}", "symbols.parquet": b"x"}
    )


def corrupt(rel: dict, how: str) -> object:
    rel = copy.deepcopy(rel)
    if how == "string":
        return "oops"
    if how == "null":
        return None
    if how == "tag_name":
        rel["tag_name"] = 20261121
    elif how == "body":
        rel["body"] = 7
    elif how == "assets-object":
        rel["assets"] = {"manifest.json": rel["assets"][0]}
    elif how == "assets-string":
        rel["assets"] = "manifest.json"
    elif how == "asset-string":
        rel["assets"][1] = "symbols.parquet"
    elif how == "size":
        rel["assets"][1]["size"] = "abc"
    elif how == "digest":
        rel["assets"][1]["digest"] = 12345
    return rel


FIELDS = {
    "string": "release",
    "null": "release",
    "tag_name": "tag_name",
    "body": "body",
    "assets-object": "assets",
    "assets-string": "assets",
    "asset-string": "assets[1]",
    "size": "size",
    "digest": "digest",
}


@pytest.mark.parametrize("how", list(FIELDS))
def test_a_malformed_release_in_the_list_is_skipped_with_a_warning(api, caplog, how):
    publish(api, manifest_doc())
    good = api.add_release(SAMPLE_REPO, "data-2020-01-01", {"manifest.json": b"{}"})
    bad = corrupt(good_release(api), how)
    api.inject("api", LIST_PATH, "body", status=200, body=json.dumps([bad, good]))
    with caplog.at_level(logging.WARNING, logger="intake_bfa.releases"):
        versions = intake_bfa.list_versions()
    assert [v.version for v in versions] == ["2020-01-01"]
    (warning,) = [r.getMessage() for r in caplog.records if "skipping release" in r.message]
    assert "/releases [0]" in warning and FIELDS[how] in warning


@pytest.mark.parametrize("how", list(FIELDS))
def test_the_release_asked_for_malformed_is_a_typed_error_naming_the_field(api, how):
    bad = corrupt(good_release(api), how)
    api.inject("api", f"/releases/tags/data-{V2}", "body", status=200, body=json.dumps(bad))
    with pytest.raises(ManifestError, match=FIELDS[how].replace("[", r"\[")) as info:
        get_manifest(get_settings(), V2)
    assert f"/releases/tags/data-{V2}" in str(info.value)


def rolling_release(server, updated_at) -> dict:
    rel = server.add_release("someone/rolling", "latest", {"availability.duckdb.gz": b"x"})
    rel["assets"][0]["updated_at"] = updated_at
    return rel


@pytest.mark.parametrize("updated_at", [1763618400, "yesterday", None])
def test_a_rolling_release_needs_a_timestamp(api, caplog, updated_at):
    bad = rolling_release(api, updated_at)
    bad["assets"][0]["created_at"] = None
    api.inject("api", LIST_PATH, "body", status=200, body=json.dumps([bad]))
    with (
        caplog.at_level(logging.WARNING, logger="intake_bfa.releases"),
        pytest.raises(VersionNotFoundError, match="no dataset releases"),
    ):
        resolve_version("latest")
    assert "updated_at" in caplog.text and "[0]" in caplog.text


def test_release_body_metadata_that_is_malformed_is_ignored(api):
    publish(api, manifest_doc())
    rel = good_release(api)
    rel["body"] = (
        '<!-- bfa-metadata: {"coverage": "all", "rows": "many", "x": '
        + "[" * 5000
        + "]" * 5000
        + "} -->"
    )
    api.inject("api", LIST_PATH, "body", status=200, body=json.dumps([rel]))
    (info,) = intake_bfa.list_versions()
    assert (info.version, info.coverage_start, info.rows) == (V2, None, None)


# --- depth ------------------------------------------------------------------------------------


def test_a_release_list_nested_200000_deep_is_a_download_error_naming_the_url(api):
    api.add_repo(SAMPLE_REPO)
    api.inject("api", LIST_PATH, "body", status=200, body=DEEP_JSON)
    with pytest.raises(DownloadError, match=r"/releases.*nested deeper than") as info:
        resolve_version("latest")
    assert "/releases" in info.value.url


def test_a_manifest_nested_200000_deep_is_a_manifest_error_naming_the_url(api):
    publish(api, DEEP_JSON.encode())
    with pytest.raises(ManifestError, match=r"manifest\.json.*nested deeper than") as info:
        get_manifest(get_settings(), V)
    assert info.value.source.endswith("/manifest.json")


def test_a_manifest_nested_deep_on_disk_is_a_manifest_error_naming_the_file(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "manifest.json").write_text(DEEP_JSON)
    with pytest.raises(ManifestError, match="nested deeper than") as info:
        resolve_version("latest", settings=get_settings(source=str(folder)))
    assert str(folder / "manifest.json") in str(info.value)
    with pytest.raises(ManifestError, match="nested deeper than") as info:
        load_manifest(folder / "manifest.json")
    assert str(folder / "manifest.json") in str(info.value)


def test_depth_limits_are_iterative_and_count_aliases_once():
    assert loads_json("[[[]]]", max_depth=3) == [[[]]]
    with pytest.raises(ValueError, match="deeper than 2"):
        loads_json("[[[]]]", max_depth=2)
    shared = [[1]]
    assert check_depth({"a": shared, "b": shared}, max_depth=3)
    with pytest.raises(ValueError, match="deeper than 2"):
        check_depth({"a": shared, "b": shared}, max_depth=2)
    laughs = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n"
        for p, n in zip("abcdefg", "bcdefgh", strict=False)
    )
    with pytest.raises(ValueError, match="values once aliases are expanded"):
        load_yaml(laughs)
    with pytest.raises(ValueError, match="contains itself"):
        load_yaml("a: &a [*a]")


# --- version tags, URLs, asset names ------------------------------------------------------------


def test_a_tag_with_full_width_digits_is_not_a_version(api):
    publish(api, manifest_doc())
    api.add_release(SAMPLE_REPO, "data-２０２６-11-22", {"manifest.json": b"{}"})
    assert resolve_version("latest") == V
    assert [v.version for v in intake_bfa.list_versions()] == [V]
    for version in (
        "２０２６-11-20",
        f"{V}\n",
        "data-２０２６-11-20",
        "rolling-２０２６1120T000000Z",
    ):
        with pytest.raises(VersionNotFoundError, match="not a dataset version"):
            resolve_version(version)
    assert not DATED_TAG_RE.match("data-２０２６-11-20")
    with pytest.raises(ManifestError):
        check_version(f"{V}\n")


def test_only_http_urls_are_followed(api):
    settings = get_settings()
    for url in ("file:///etc/passwd", "ftp://example.com/x", "data:,hello", ""):
        with pytest.raises(DownloadError, match="not an http") as info:
            open_url(url, settings)
        assert info.value.url == url
    # A redirect to a file: URL, from a server we otherwise trust.
    api.add_repo(SAMPLE_REPO)
    api.inject("api", LIST_PATH, "status", status=302, headers={"Location": "file:///etc/passwd"})
    with pytest.raises(DownloadError, match=r"redirected to 'file:///etc/passwd'") as info:
        resolve_version("latest")
    assert "/releases" in info.value.url


def test_a_file_download_url_in_a_release_is_refused(api):
    rel = publish(api, manifest_doc())
    rel["assets"][0]["browser_download_url"] = "file:///etc/passwd"
    api.inject("api", f"/releases/tags/data-{V}", "body", status=200, body=json.dumps(rel))
    with pytest.raises(DownloadError, match=r"file:///etc/passwd.*not an http"):
        get_manifest(get_settings(), V)


def test_a_manifest_download_redirected_to_a_file_url_is_refused(api):
    publish(api, manifest_doc())
    api.inject("web", "manifest.json", "status", status=302, headers={"Location": "file:///etc/x"})
    with pytest.raises(DownloadError, match="redirected to 'file:///etc/x'") as info:
        get_manifest(get_settings(), V)
    assert info.value.url.endswith("/manifest.json")


def test_a_300_character_asset_name_is_refused_before_touching_the_disk(api):
    name = "v" * 292 + ".parquet"
    doc = manifest_doc(volume_rankings={"asset": name, "size": 4})
    publish(api, doc, **{name: b"PAR1"})
    out = run_cli("fetch", "volume_rankings", "--data-version", V)
    assert_clean_failure(out, "longer than 200 bytes", "asset")


@pytest.mark.parametrize(
    "name",
    ["é" * 101, "a" * 201, "a\nb", "a\x1b[31m", "con:x", "a/b", "..", ".hidden", "a?b", " a", ""],
)
def test_asset_names_are_checked_for_length_and_characters(name):
    with pytest.raises(ManifestError, match="release asset: asset name"):
        check_asset_name(name, "release asset")


def test_asset_names_up_to_the_limit_pass():
    for name in ("a" * MAX_ASSET_NAME_BYTES, "é" * 100, "availability.duckdb.gz", "a b.csv"):
        assert check_asset_name(name, "x") == name


# --- catalogs -----------------------------------------------------------------------------------


def write_catalog(folder: Path, doc_or_text) -> Path:
    path = folder / "cat.yaml"
    text = doc_or_text if isinstance(doc_or_text, str) else yaml.safe_dump(doc_or_text)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["aliases"].update(symbols=["symbols"]), "alias 'symbols'"),
        (lambda d: d["aliases"].update(symbols={"a": 1}), "alias 'symbols'"),
        (lambda d: d.update(entries=["symbols"]), "'entries' must be a mapping"),
        (lambda d: d["entries"].update(symbols="x"), "entries.symbols must be a mapping"),
        (lambda d: d["data"]["symbols_data"].update(kwargs=[1]), "data.symbols_data.kwargs"),
        (lambda d: d.update(user_parameters=[1]), "'user_parameters' must be a mapping"),
    ],
)
def test_a_malformed_catalog_is_a_catalog_error_naming_the_file_and_field(tmp_path, change, field):
    doc = catalog_dict()
    change(doc)
    path = write_catalog(tmp_path, doc)
    with pytest.raises(CatalogError, match=field) as info:
        open_catalog(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "text",
    ["[" * 5000 + "]" * 5000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 300))],
    ids=["flow", "block"],
)
def test_a_catalog_nested_deep_is_a_catalog_error_naming_the_file(tmp_path, text):
    path = write_catalog(tmp_path, text)
    with pytest.raises(CatalogError, match="nested deeper than") as info:
        open_catalog(path)
    assert str(path) in str(info.value)


# --- property-based fuzzing ----------------------------------------------------------------------

#: Per-example time bound: parsing never takes longer than this, whatever the input.
DEADLINE_MS = 1500
FAST = settings(max_examples=25, deadline=DEADLINE_MS, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(
    max_examples=1000, deadline=DEADLINE_MS, suppress_health_check=[HealthCheck.too_slow]
)


def fuzzed(check, *strategies):
    """``check`` as two hypothesis tests: a few examples by default, many under ``slow``."""
    fast = FAST(given(*strategies)(check))
    slow = pytest.mark.slow(SLOW(given(*strategies)(check)))
    return fast, slow


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=25,
)
odd_text = st.text(alphabet=st.sampled_from("abdlmnstuy_@/-.:01269２٣ *?[\n\x00é"), max_size=40)


def _api_asset(name: str) -> dict:
    stamp = "2026-11-20T06:00:00Z"
    return {
        "name": name, "size": 10, "digest": "sha256:" + "0" * 64, "updated_at": stamp,
        "created_at": stamp, "url": "https://api.example.invalid/assets/1",
        "browser_download_url": f"https://example.invalid/{name}",
    }  # fmt: skip


@st.composite
def release_json(draw):
    """A release as the API could answer it: valid, then some fields made anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    tag = draw(st.sampled_from([f"data-{V}", "latest", "data-２０２６-11-20", "v1"]) | odd_text)
    names = draw(
        st.lists(
            st.sampled_from(["manifest.json", "availability.duckdb.gz", "x.parquet", "../x"])
            | odd_text,
            max_size=4,
        )
    )
    rel = {
        "tag_name": tag, "draft": False, "prerelease": False, "body": "",
        "published_at": "2026-11-20T06:00:00Z", "assets": [_api_asset(n) for n in names],
    }  # fmt: skip
    for key in draw(st.lists(st.sampled_from([*rel, "extra"]), max_size=3)):
        rel[key] = draw(json_values)
    if isinstance(rel.get("assets"), list) and rel["assets"]:
        asset = rel["assets"][draw(st.integers(0, len(rel["assets"]) - 1))]
        if isinstance(asset, dict) and asset:
            for key in draw(st.lists(st.sampled_from(sorted(asset)), max_size=2)):
                asset[key] = draw(json_values)
    return rel


def _release_parses_or_is_malformed(raw):
    try:
        release = parse_release(raw, source="https://api.example.invalid/releases [0]")
    except ManifestError as err:
        assert "https://api.example.invalid/releases [0]" in str(err)
        return
    if release is not None:
        assert resolve_version(release.version) == release.version  # a version one can pin
        assert all(check_asset_name(name, "x") for name in release.assets)
        assert all(isinstance(a.size, int) and a.size >= 0 for a in release.assets.values())


test_release_json_fuzz, test_release_json_fuzz_slow = fuzzed(
    _release_parses_or_is_malformed, release_json()
)


@st.composite
def manifest_json(draw):
    """A manifest: datasets from valid, derived and arbitrary entries; top-level fields anything."""
    entry = st.one_of(
        st.fixed_dictionaries(
            {"asset": st.sampled_from(["a.parquet", "availability.duckdb.gz"]) | odd_text},
            optional={
                "size": st.integers(-2, 10) | json_values,
                "sha256": st.just("0" * 64) | json_values,
                "rows": st.integers(-1, 5) | json_values,
                "coverage": st.fixed_dictionaries({"start": odd_text, "end": st.just(V)})
                | json_values,
                "compression": st.sampled_from(["gzip", "zip", None]),
                "columns": st.just([{"name": "a", "type": "INT"}]) | json_values,
                "urls": st.just(["https://m.example/x"]) | json_values,
            },
        ),
        st.fixed_dictionaries({"derived_from": st.sampled_from([*DATASETS, "nope"]) | json_values}),
        json_values,
    )
    doc = {
        "schema_version": 1,
        "version": draw(st.just(V) | odd_text),
        "datasets": draw(
            st.dictionaries(st.sampled_from([*DATASETS, "future"]), entry, max_size=4)
        ),
    }
    for key in draw(
        st.lists(st.sampled_from([*doc, "layout", "coverage", "synthetic"]), max_size=2)
    ):
        doc[key] = draw(json_values)
    return doc


def _manifest_parses_or_is_malformed(doc):
    try:
        manifest = parse_manifest(doc, source="fuzz/manifest.json")
    except ManifestError as err:
        assert "fuzz/manifest.json" in str(err)
        return
    for entry in manifest.datasets.values():
        if entry.derived_from is not None:
            origin = manifest.datasets[entry.derived_from]
            assert origin.asset is not None and DATASETS[origin.name].kind == "database"
            assert entry.name in DERIVABLE
        else:
            assert check_asset_name(entry.asset, "x")
    # What reaches the disk: the manifest round-trips through our own JSON reader.
    assert check_depth(doc) is doc


test_manifest_fuzz, test_manifest_fuzz_slow = fuzzed(
    _manifest_parses_or_is_malformed, manifest_json()
)


def _json_text_decodes_or_is_refused(text):
    with contextlib.suppress(ValueError):
        loads_json(text)


test_json_text_fuzz, test_json_text_fuzz_slow = fuzzed(
    _json_text_decodes_or_is_refused,
    st.text(alphabet=st.sampled_from('[]{}":,01 \\'), max_size=200)
    | st.integers(60, 70).map(lambda n: "[" * n + "]" * n),
)


@st.composite
def catalog_text(draw):
    """A catalog: ours with parts replaced by anything, or arbitrary YAML-ish text."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.text(alphabet=st.sampled_from("ab:-[]{}&*!|> \n#'\"1"), max_size=80))
    doc = catalog_dict()
    for _ in range(draw(st.integers(1, 3))):
        section = draw(st.sampled_from(["aliases", "entries", "data", "user_parameters", None]))
        if section is None:
            doc[draw(st.sampled_from(sorted(doc)))] = draw(json_values)
        elif isinstance(doc.get(section), dict) and doc[section]:
            key = draw(st.sampled_from(sorted(doc[section])))
            doc[section][key] = draw(json_values)
    return yaml.safe_dump(doc, allow_unicode=True)


def _catalog_opens_or_is_refused(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_catalog(Path(tmp), text)
        try:
            open_catalog(path)
        except CatalogError as err:
            assert str(path) in str(err)


test_catalog_fuzz, test_catalog_fuzz_slow = fuzzed(_catalog_opens_or_is_refused, catalog_text())

bfa_paths = st.lists(
    st.sampled_from(["daily_availability", "symbols", "o/r", "@", V, "@latest", "data-"])
    | odd_text,
    max_size=4,
).map("".join)


def _bfa_path_resolves_or_is_typed(path):
    # Offline with nothing cached: every well-formed path ends in a typed "not cached".
    fs = BfaFileSystem(offline=True)
    for action in (fs._canonical, fs._resolve):
        with contextlib.suppress(BfaError):
            action(f"bfa://{path}")


test_bfa_path_fuzz, test_bfa_path_fuzz_slow = fuzzed(_bfa_path_resolves_or_is_typed, bfa_paths)


def _version_pins_or_is_refused(version):
    try:
        pinned = resolve_version(version)
    except VersionNotFoundError as err:
        assert "version" in str(err)
    else:
        assert pinned.isascii() and "\n" not in pinned
    with contextlib.suppress(ManifestError):
        check_version(version)


test_version_fuzz, test_version_fuzz_slow = fuzzed(
    _version_pins_or_is_refused,
    st.sampled_from([V, f"data-{V}", "rolling-20261120T060000Z", "2026-02-30"]) | odd_text,
)
