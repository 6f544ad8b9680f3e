"""Configuration precedence, validation, and the error family."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from intake_bfa import errors
from intake_bfa.config import DEFAULT_API_URL, DEFAULT_REPO, get_settings
from intake_bfa.errors import ConfigError


def test_argument_beats_environment_beats_default(monkeypatch, tmp_path):
    monkeypatch.delenv("BFA_REPO")
    monkeypatch.delenv("BFA_API_URL")
    assert get_settings().repo == DEFAULT_REPO
    assert get_settings().api_url == DEFAULT_API_URL
    monkeypatch.setenv("BFA_REPO", "env/repo")
    monkeypatch.setenv("BFA_API_URL", "https://ghe.example.com/api/v3/")
    assert get_settings().repo == "env/repo"
    assert get_settings().api_url == "https://ghe.example.com/api/v3"  # trailing slash dropped
    assert get_settings(repo="arg/repo").repo == "arg/repo"
    assert get_settings(cache_dir=tmp_path / "x").cache_dir == tmp_path / "x"


def test_read_at_call_time_not_import(monkeypatch):
    monkeypatch.setenv("BFA_TTL", "2h")
    assert get_settings().ttl == 7200
    monkeypatch.setenv("BFA_TTL", "90")
    assert get_settings().ttl == 90
    monkeypatch.setenv("BFA_OFFLINE", "yes")
    assert get_settings().offline is True
    monkeypatch.setenv("BFA_OFFLINE", "0")
    assert get_settings().offline is False


def test_default_cache_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("BFA_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert get_settings().cache_dir == tmp_path / "xdg" / "intake-bfa"


def test_token_from_environment_is_never_shown(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret123")
    settings = get_settings()
    assert settings.token == "ghp_secret123"
    assert "ghp_secret123" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("BFA_REPO", "no-slash", "owner/name"),
        ("BFA_REPO", "a/b/c", "owner/name"),
        ("BFA_REPO", "../etc", "owner/name"),
        ("BFA_API_URL", "ftp://x", "http(s) URL"),
        ("BFA_API_URL", "api.github.com", "http(s) URL"),
        ("BFA_OFFLINE", "maybe", "boolean"),
        ("BFA_TTL", "soon", "duration"),
        ("BFA_TTL", "-5", "duration"),
        ("BFA_TIMEOUT", "0", "positive"),
        ("BFA_RETRIES", "0", "at least 1"),
        ("BFA_MIRRORS", "https://cdn.example.com/file.parquet", "{asset}"),
        ("BFA_MIRRORS", "ftp://cdn.example.com/{asset}", "mirror URL template"),
        ("BFA_MIRRORS", "https://cdn.example.com/{asset}/{secret}", "mirror URL template"),
    ],
)
def test_invalid_environment_values_name_the_variable(monkeypatch, variable, value, fragment):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        get_settings()
    assert variable in str(info.value) or variable == "BFA_TIMEOUT"
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_error_family_inherits_builtins_and_carries_data():
    err = errors.NotCachedError("gone", dataset="symbols", version="2021-06-28", cache_dir="/c")
    assert isinstance(err, FileNotFoundError) and isinstance(err, errors.BfaError)
    assert (err.dataset, err.version, err.cache_dir) == ("symbols", "2021-06-28", "/c")
    assert isinstance(errors.IntegrityError("x"), ValueError)
    assert isinstance(errors.DatasetNotFoundError("x"), KeyError)
    assert str(errors.DatasetNotFoundError("plain message")) == "plain message"
    assert isinstance(errors.VersionNotFoundError("x"), LookupError)
    assert isinstance(errors.DownloadError("x"), OSError)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is errors.NotCachedError and clone.version == "2021-06-28"


def test_import_is_light_and_writes_nothing(tmp_path):
    code = (
        "import sys, intake_bfa, intake\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'duckdb', 'polars', 'dask') if m in sys.modules]\n"
        "print(heavy)\n"
        "print('intake_bfa.readers' in sys.modules)\n"
    )
    env = {"BFA_CACHE_DIR": str(tmp_path / "never"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout.split("\n")
    assert out[0] == "[]"
    assert out[1] == "True"  # intake found our plugin through the intake.imports entry point
    assert not Path(tmp_path / "never").exists()
