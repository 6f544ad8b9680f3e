"""The catalog file: generated, shipped, opened by intake itself, and validated."""

from __future__ import annotations

from importlib import resources

import intake
import pytest

import intake_bfa
from intake_bfa.catalog import catalog_yaml, open_catalog
from intake_bfa.errors import CatalogError
from intake_bfa.readers import BfaDatabaseReader, BfaPandasReader

from .conftest import ROOT, V_OLD

DATASET_NAMES = [
    "daily_availability",
    "availability_db",
    "volume_rankings",
    "symbols",
    "availability_events",
]


def test_repo_and_packaged_catalogs_are_generated_and_identical():
    generated = catalog_yaml()
    assert (ROOT / "catalog.yaml").read_text() == generated, "run: python -m intake_bfa.catalog"
    packaged = resources.files("intake_bfa").joinpath("catalog.yaml").read_text()
    assert packaged == generated


def test_intake_open_catalog_lists_the_datasets():
    cat = intake.open_catalog(str(ROOT / "catalog.yaml"))
    assert list(cat) == DATASET_NAMES
    assert isinstance(cat.daily_availability, BfaPandasReader)
    assert isinstance(cat.availability_db, BfaDatabaseReader)
    assert list(intake_bfa.open_catalog()) == DATASET_NAMES


def test_catalog_never_claims_the_generic_parquet_type():
    from intake.readers import datatypes

    readers = datatypes.Parquet(url="x.parquet").possible_readers["importable"]
    assert not any(r.__module__.startswith("intake_bfa") for r in readers)


def test_entries_carry_descriptions_and_column_meanings():
    cat = open_catalog()
    meta = cat.daily_availability.metadata
    assert "dense grid" in meta["description"]
    assert "available" in meta["columns"]


def test_intake_catalog_reads_through_the_local_server(published):
    cat = intake.open_catalog(str(ROOT / "catalog.yaml"))
    df = cat.daily_availability.read(version=V_OLD, symbols=["BTCUSDT"])
    assert set(df["symbol"]) == {"BTCUSDT"}


def test_pinned_catalog_points_at_its_repo_and_version(published, tmp_path, monkeypatch):
    monkeypatch.setenv("BFA_REPO", "someone/else")  # the catalog's explicit repo wins
    path = tmp_path / "pinned.yaml"
    path.write_text(
        catalog_yaml(
            repo="bfa-sample/binance-futures-availability",
            api_url=published.api_url,
            version=V_OLD,
        )
    )
    cat = open_catalog(path)
    assert cat.metadata["pinned_version"] == V_OLD
    assert cat.daily_availability.read(columns=["date"])["date"].max().isoformat() == "2021-06-27"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("version: 2\nentries: [unclosed", "invalid YAML at line"),
        ("- just\n- a list\n", "YAML mapping"),
        ("version: 1\nsources: {}\n", "version: 2"),
        (
            "version: 2\nentries:\n  x:\n    reader: nowhere.module:Reader\n    kwargs: {}\n",
            "cannot import reader",
        ),
        ("version: 2\nentries:\n  x: {kwargs: {}}\n", "has no 'reader'"),
        ("version: 2\naliases:\n  x: missing\n", "points to missing"),
    ],
)
def test_bad_catalog_files(tmp_path, text, fragment):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogError) as info:
        open_catalog(path)
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_missing_catalog_file(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        open_catalog(tmp_path / "nope.yaml")


def test_to_reader_picks_the_same_reader_in_every_process():
    """intake orders the readers of one datatype by a set of classes: by address, per process.

    Only the pandas reader implements ``BfaTable`` (the others its base), so the default
    is the same in 20 of 20 fresh processes, and each other output is still one call away.
    """
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    code = (
        "import intake\n"
        "from intake_bfa.readers import BfaTable\n"
        "d = BfaTable(dataset='symbols')\n"
        "outs = {o: type(d.to_reader(outtype=o)).__name__ for o in "
        "('pandas', 'pyarrow', 'duckdb', 'polars', 'dask')}\n"
        "print(type(d.to_reader()).__name__, sorted(outs.items()))\n"
    )

    def run(_):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    with ThreadPoolExecutor(4) as pool:
        answers = set(pool.map(run, range(20)))
    assert len(answers) == 1, answers
    (answer,) = answers
    assert answer.startswith("BfaPandasReader ")
    for name in ("BfaArrowReader", "BfaDuckDBReader", "BfaPolarsReader", "BfaDaskReader"):
        assert name in answer


def test_user_parameters_work_from_intake_alone(published, tmp_path):
    """version, start, end and symbols are the catalog's user parameters (intake's own API)."""
    cat = intake.open_catalog(str(ROOT / "catalog.yaml"))
    ups = cat.user_parameters
    assert {k: (ups[k].dtype, ups[k].default) for k in ("version", "start", "end", "symbols")} == {
        "version": ("str", "latest"),
        "start": ("object", None),
        "end": ("object", None),
        "symbols": ("object", None),
    }
    assert all(ups[k].description for k in ("version", "start", "end", "symbols"))
    old_end = intake_bfa.read("daily_availability", V_OLD).date.max()
    assert cat(version=V_OLD).daily_availability.read().date.max() == old_end
    assert cat.daily_availability.read(version=V_OLD).date.max() == old_end
    assert cat.daily_availability.read().date.max() > old_end  # the default: latest
    day = cat(start="2021-03-04", end="2021-03-04", symbols=["BTCUSDT"]).daily_availability.read()
    assert len(day) == 1 and day.symbol[0] == "BTCUSDT"
    # An argument of the read call wins over the catalog's parameter.
    eth = cat(symbols="BTCUSDT").daily_availability.read(symbols="ETHUSDT", start="2021-03-04")
    assert set(eth.symbol) == {"ETHUSDT"}
    assert cat(symbols="BTCUSDT").symbols.read().symbol.tolist() == ["BTCUSDT"]
    assert cat(version=V_OLD).volume_rankings.read().date.max() <= old_end
    con = cat(version=V_OLD).availability_db.read()
    assert con.execute("SELECT max(date) FROM daily_availability").fetchall()[0][0] == old_end
    # intake's own round trip keeps the parameters' defaults and their effect.
    cat.to_yaml_file(str(tmp_path / "copy.yaml"))
    again = intake.open_catalog(str(tmp_path / "copy.yaml"))
    assert again(version=V_OLD).daily_availability.read().date.max() == old_end
    bfa_cat = intake_bfa.open_catalog()
    assert bfa_cat(version=V_OLD).symbols.read().shape == intake_bfa.read("symbols", V_OLD).shape
