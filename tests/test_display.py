"""Notebook display and terminal reprs: well-formed, escaped, complete, and network-free."""

from __future__ import annotations

import json
import time
from html.parser import HTMLParser

import intake_bfa
from intake_bfa.cache.admin import (
    CacheStatus,
    Entry,
    RepoStatus,
    VersionStatus,
    cache_status,
    dataset_state,
)
from intake_bfa.cache.layout import CacheLayout
from intake_bfa.config import get_settings
from intake_bfa.display import notebook as display
from intake_bfa.releases import VersionInfo, VersionList
from intake_bfa.schema import DATASETS

from .conftest import V_NEW, V_OLD

HOSTILE = "<script>alert(1)</script>"
VOID = {"br", "hr", "img", "meta", "input", "link", "wbr"}


class _Checker(HTMLParser):
    """Records start tags and fails on any unclosed or mismatched tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> _Checker:
    """Parse ``html``; assert every tag is closed and no script/external asset appears."""
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.stack == [], f"unclosed tags: {checker.stack}"
    assert not {"script", "img", "link", "iframe"} & set(checker.tags)
    return checker


def text_of(html: str) -> str:
    return "".join(parse(html).text)


def _fill_cache(version: str = "latest") -> None:
    for name in ("daily_availability", "symbols"):
        intake_bfa.local_path(name, version=version)


def test_catalog_html_without_cache_and_dead_server_is_fast_and_unresolved():
    # The autouse fixture points BFA_API_URL at a closed port; nothing is cached.
    cat = intake_bfa.open_catalog()
    start = time.monotonic()
    html = cat._repr_html_()
    text = repr(cat)
    browse_html = intake_bfa.browse(cat)._repr_html_()
    assert time.monotonic() - start < 5
    shown = text_of(html)
    for name in DATASETS:
        assert name in shown and name in text
    assert display.NOT_RESOLVED in shown and display.NOT_RESOLVED in text
    assert "not cached" in shown
    assert DATASETS["symbols"].description in shown
    parse(browse_html)


def test_catalog_display_uses_cache_only(published):
    _fill_cache()
    cat = intake_bfa.open_catalog()
    published.clear_requests()
    html, text = cat._repr_html_(), repr(cat)
    browse = intake_bfa.browse(cat)
    view_html, view_text = browse._repr_html_(), repr(browse)
    reader_html, reader_text = cat.daily_availability._repr_html_(), repr(cat.symbols)
    assert published.requests == []
    assert "date" in text_of(reader_html)

    shown = text_of(html)
    assert V_NEW in shown and "2019-12-31 .. 2021-06-30" in shown
    assert "cached" in shown and "not cached" in shown  # volume_rankings was never fetched
    assert "daily_availability" in text and V_NEW in text and "cached" in text
    assert "(newest cached)" not in shown  # the read recorded the "latest" ref
    for name in DATASETS:
        assert name in view_text
        assert name in text_of(view_html)
    assert "symbols" in reader_text and "BfaPandasReader" in reader_text


def test_catalog_without_ref_falls_back_to_newest_cached(published):
    _fill_cache(V_OLD)
    CacheLayout(get_settings()).ref_path().unlink(missing_ok=True)
    published.clear_requests()
    shown = text_of(intake_bfa.open_catalog()._repr_html_())
    assert V_OLD in shown and "newest cached" in shown
    assert published.requests == []


def test_reader_html_shows_schema_versions_and_example(published):
    _fill_cache(V_OLD)
    _fill_cache(V_NEW)
    cat = intake_bfa.open_catalog()
    published.clear_requests()
    html = cat.daily_availability._repr_html_()
    assert published.requests == []
    shown = text_of(html)
    for column, (kind, meaning) in DATASETS["daily_availability"].columns.items():
        assert column in shown and kind in shown and meaning in shown
    assert f"{V_NEW}, {V_OLD}" in shown  # cached versions, newest first
    assert f"cat.daily_availability.read(version='{V_NEW}')" in shown
    assert "pandas:DataFrame" in shown
    # Not cached yet: state says so and the example reads "latest".
    shown = text_of(cat.volume_rankings._repr_html_())
    assert "not cached" in shown and "cat.volume_rankings.read()" in shown
    assert "rank_change_7d" in shown


def test_pinned_version_is_shown_even_if_not_cached(tmp_path):
    cat = intake_bfa.open_catalog()
    reader = cat.symbols
    reader.data.version = "2020-01-01"
    state = dataset_state("symbols", reader.data)
    assert state.version == "2020-01-01" and state.source == "pinned" and not state.cached


def test_version_list_reprs(published):
    versions = intake_bfa.list_versions()
    assert isinstance(versions, VersionList) and isinstance(versions, list)
    assert [v.version for v in versions] == [V_NEW, V_OLD]
    shown = text_of(versions._repr_html_())
    assert V_NEW in shown and V_OLD in shown and "latest" in shown
    assert "2019-12-31 .. 2021-06-30" in shown
    text = repr(versions)
    assert V_NEW in text and "*" in text and "2 versions" in text
    assert "no versions" in text_of(VersionList()._repr_html_())


def test_cache_status_html(published):
    _fill_cache()
    status = cache_status(get_settings())
    shown = text_of(status._repr_html_())
    assert get_settings().repo in shown and V_NEW in shown and "(configured)" in shown
    assert "daily_availability.parquet" in shown and "latest" in shown
    empty = cache_status(get_settings().with_(cache_dir=get_settings().cache_dir / "none"))
    assert "does not exist yet" in text_of(empty._repr_html_())


def test_hostile_names_are_escaped():
    info = VersionInfo(HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, 1, 2, True, True)
    entry = Entry(HOSTILE, 1, 0.0)
    vstatus = VersionStatus(HOSTILE, 1, True, False, [entry])
    repo = RepoStatus(HOSTILE, True, 1, HOSTILE, 0.0, 1.0, 1, 0, 1.0, [vstatus])
    status = CacheStatus(HOSTILE, True, 1, [repo], [entry], 1)
    for html in (VersionList([info])._repr_html_(), status._repr_html_()):
        assert "<script" not in html and "&lt;script&gt;" in html
        assert HOSTILE in text_of(html)
    assert HOSTILE in repr(VersionList([info]))


def test_hostile_cache_folders_and_catalog_metadata(tmp_path, monkeypatch):
    settings = get_settings()
    layout = CacheLayout(settings)
    bad = layout.version_dir("<img src=x onerror=alert(1)>")
    bad.mkdir(parents=True)
    (bad / "manifest.json").write_text(json.dumps({"version": HOSTILE}))
    other = settings.cache_dir / "v1" / "<script>" / "repo" / "2021-01-01"
    other.mkdir(parents=True)
    doc = intake_bfa.catalog.catalog_dict()
    doc["metadata"]["name"] = HOSTILE
    doc["entries"]["symbols"]["metadata"]["description"] = HOSTILE
    path = tmp_path / "hostile.yaml"
    path.write_text(json.dumps(doc))  # JSON is YAML
    cat = intake_bfa.open_catalog(path)
    pages = [cat._repr_html_(), intake_bfa.browse(cat)._repr_html_(), cat.symbols._repr_html_()]
    pages.append(cache_status(settings)._repr_html_())
    for html in pages:
        assert "<script" not in html and "<img" not in html
        parse(html)
    assert HOSTILE in text_of(pages[0])
    assert "&lt;script&gt;" in pages[3] and "&lt;img" in pages[1]
    assert "symbols" in repr(cat)


def test_broken_reader_state_is_shown_not_raised(monkeypatch):
    cat = intake_bfa.open_catalog()

    def boom(self):
        raise RuntimeError("<b>settings broke</b>")

    monkeypatch.setattr(intake_bfa.readers.BfaData, "settings", boom)
    html = cat._repr_html_()
    assert "&lt;b&gt;settings broke" in html
    parse(html)
    assert "daily_availability" in repr(cat)
    parse(intake_bfa.browse(cat)._repr_html_())


def test_browse_defaults_to_packaged_catalog_and_is_exported():
    assert "browse" in dir(intake_bfa)
    view = intake_bfa.browse()
    assert isinstance(view.catalog, intake_bfa.catalog.BfaCatalog)
    shown = text_of(view._repr_html_())
    assert "cached versions" in shown and "cache status" in shown
    assert view._repr_html_().count("<style>") == 1


def test_display_module_is_light():
    import subprocess
    import sys

    code = "import sys, intake_bfa.display.notebook; print('pandas' in sys.modules, 'duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
