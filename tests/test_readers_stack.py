"""Every reader of the stack on real published files: pandas, pyarrow, DuckDB, polars, Dask, Spark.

Each reader's answer to the same filtered question is compared with pyarrow's reading of
the published file. The Spark test (slow group) installs pyspark into a temporary venv.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

import intake_bfa
from intake_bfa import datasets
from intake_bfa.remote import relation as remote

from .conftest import V_NEW

COLUMNS = ["date", "symbol", "available", "file_size_bytes", "quote_volume_usdt"]
QUERY = {"symbols": ["BTCUSDT", "ETHUSDT"], "start": "2021-01-01", "end": "2021-03-31"}
ARROW_FILTERS = [
    ("date", ">=", dt.date(2021, 1, 1)),
    ("date", "<=", dt.date(2021, 3, 31)),
    ("symbol", "in", ["BTCUSDT", "ETHUSDT"]),
]


# dask 2026.8 itself calls reset_index(inplace=True), deprecated by pandas 3.1.
dask_inplace = pytest.mark.filterwarnings("ignore:The inplace keyword in DataFrame.reset_index")


def _rows(records) -> list[tuple]:
    """Canonical, order-free form: sorted tuples, NaN and None alike."""

    def norm(v):
        return None if v is None or v != v else v

    return sorted((tuple(norm(v) for v in r) for r in records), key=lambda r: (r[0], r[1]))


def _pandas_rows(df) -> list[tuple]:
    df = df[COLUMNS].astype(object).where(df[COLUMNS].notna(), None)
    return _rows(df.itertuples(index=False, name=None))


@pytest.fixture
def expected(published, samples):
    path = samples.dated(V_NEW) / "daily_availability.parquet"
    table = pq.read_table(path, columns=COLUMNS, filters=ARROW_FILTERS)
    rows = _rows(tuple(r[c] for c in COLUMNS) for r in table.to_pylist())
    assert len(rows) > 100  # the question has a real answer
    return rows


def test_pandas(expected):
    assert _pandas_rows(intake_bfa.read("daily_availability", V_NEW, **QUERY)) == expected


def test_pyarrow(expected):
    table = intake_bfa.to_arrow("daily_availability", V_NEW, columns=COLUMNS, **QUERY)
    assert _rows(tuple(r[c] for c in COLUMNS) for r in table.to_pylist()) == expected


def test_duckdb_relation(expected):
    rel = intake_bfa.to_duckdb("daily_availability", V_NEW, columns=COLUMNS, **QUERY)
    assert _rows(rel.fetchall()) == expected
    # Still lazy: more SQL composes onto it.
    (n,) = rel.aggregate("count(*)").fetchall()[0]
    assert n == len(expected)


def test_polars_lazy_frame_pushes_the_filter_into_the_scan(expected):
    lazy = datasets.to_polars("daily_availability", V_NEW, columns=COLUMNS, **QUERY)
    plan = lazy.explain()
    scan = plan[plan.index("Parquet SCAN") :]
    # The predicate is part of the scan node (SELECTION), not a FILTER above it.
    assert "SELECTION" in scan and 'col("symbol").is_in' in scan and "FILTER" not in plan
    assert _rows(lazy.collect().rows()) == expected


@dask_inplace
def test_dask_partitions_are_runs_of_row_groups(published, expected):
    path = intake_bfa.local_path("daily_availability", V_NEW)
    meta = pq.read_metadata(path)
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    per_partition = 2 * int(meta.num_rows / meta.num_row_groups)  # the sample is small
    ddf = datasets.to_dask("daily_availability", V_NEW, partition_rows=per_partition)
    n = round(per_partition / (meta.num_rows / meta.num_row_groups))
    assert n >= 2 and ddf.npartitions == -(-len(sizes) // n) > 1
    assert ddf.map_partitions(len).compute().tolist() == [
        sum(sizes[i : i + n]) for i in range(0, len(sizes), n)
    ]
    # Partition k holds exactly row groups k*n .. k*n+n-1 (boundaries align).
    file = pq.ParquetFile(path)
    for k in (0, ddf.npartitions - 1):
        part = ddf.get_partition(k).compute()
        groups = file.read_row_groups(range(k * n, min(k * n + n, len(sizes)))).to_pandas()
        assert _pandas_rows(part) == _pandas_rows(groups)
    whole = intake_bfa.read("daily_availability", V_NEW)
    assert _pandas_rows(ddf.compute()) == _pandas_rows(whole)
    # The default partitioning and the filters (row groups pruned by their statistics).
    default = datasets.to_dask("daily_availability", V_NEW, columns=COLUMNS, **QUERY)
    assert default.npartitions == 1 and _pandas_rows(default.compute()) == expected


@dask_inplace
def test_dask_over_the_remote_file(published, expected):
    import dask.dataframe as dd

    fs = remote.RemoteFileSystem()
    url = remote.remote_url("daily_availability", V_NEW)
    ddf = dd.read_parquet(
        url, filesystem=fs, columns=COLUMNS, filters=ARROW_FILTERS, split_row_groups=2
    )
    assert _pandas_rows(ddf.compute()) == expected
    size = fs.info(url)["size"]
    assert 0 < fs.bytes_transferred < size  # pruned row groups were never fetched


# -- Spark (slow: installs pyspark into a temporary venv) -----------------------------------

# Per column: non-null count and a sum (numbers, booleans, string lengths) or a max (dates,
# timestamps) over the whole file, so every page of every encoding is decoded; plus a few
# whole rows. Run with Spark's vectorized reader and with parquet-mr's row reader.
SPARK_PROBE = """
import json, re, sys
from pyspark.sql import SparkSession, functions as F
spark = (SparkSession.builder.master("local[1]").appName("bfa")
         .config("spark.ui.enabled", "false").config("spark.sql.session.timeZone", "UTC")
         .getOrCreate())
spark.sparkContext.setLogLevel("ERROR")

def summary(df):
    aggs = []
    for f in df.schema.fields:
        kind, c = f.dataType.simpleString(), F.col(f.name)
        aggs.append(F.count(c).alias(f.name + ":count"))
        if kind in ("date", "timestamp", "timestamp_ntz"):
            aggs.append(F.max(c).cast("string").alias(f.name + ":max"))
        elif kind == "string":
            aggs.append(F.sum(F.length(c)).alias(f.name + ":sum"))
        else:
            aggs.append(F.sum(c.cast("double") if kind != "boolean" else c.cast("int"))
                        .alias(f.name + ":sum"))
    return df.agg(*aggs).collect()[0].asDict()

out = {"version": spark.version}
for vectorized in ("true", "false"):
    spark.conf.set("spark.sql.parquet.enableVectorizedReader", vectorized)
    result = out[vectorized] = {}
    for path in sys.argv[1:]:
        try:
            df = spark.read.parquet(path)
            rows = df.where("symbol = 'BTCUSDT' AND date BETWEEN '2021-01-01' AND '2021-01-05'")
            result[path] = {
                "rows": df.count(),
                "schema": {f.name: f.dataType.simpleString() for f in df.schema.fields},
                "summary": summary(df),
                "sample": [{k: str(v) for k, v in r.asDict().items()}
                           for r in rows.orderBy("date").collect()],
            }
        except Exception as err:  # the cause may be deep in a long Java trace: lift it
            msg = f"{type(err).__name__}: {err}"
            cause = re.search(r"Unsupported encoding: \\w+", msg)
            result[path] = {"error": (cause.group(0) + " | " if cause else "") + msg[:2000]}
print("RESULT" + json.dumps(out))
spark.stop()
"""


# The newest Spark, and the oldest our `spark` extra allows.
SPARKS = {"newest": "pyspark>=4", "3.5": "pyspark>=3.5,<3.6"}


@pytest.fixture(scope="session", params=list(SPARKS))
def spark_python(request, tmp_path_factory):
    """(name, python) of a venv with pyspark, built once per session (~400 MB download each)."""
    venv = tmp_path_factory.mktemp(f"spark-{request.param}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [venv / "bin" / "pip", "install", "-q", SPARKS[request.param]], check=True, timeout=900
    )
    return request.param, venv / "bin" / "python"


def _arrow_summary(table) -> dict:
    """What SPARK_PROBE's summary() computes, with pyarrow."""
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for field in table.schema:
        col = table[field.name]
        out[f"{field.name}:count"] = pc.count(col).as_py()
        if pa.types.is_temporal(field.type):
            out[f"{field.name}:max"] = pc.max(col).as_py()
        elif pa.types.is_string(field.type):
            out[f"{field.name}:sum"] = pc.sum(pc.utf8_length(col)).as_py()
        else:
            out[f"{field.name}:sum"] = pc.sum(pc.cast(col, pa.float64())).as_py()
    return out


@pytest.mark.slow
def test_spark_reads_the_published_parquet_files(published, spark_python):
    paths = [intake_bfa.local_path(d, V_NEW) for d in ("daily_availability", "volume_rankings")]
    # The encodings this test is about are really in the files.
    meta = pq.read_metadata(paths[0]).row_group(0)
    used = {e for i in range(meta.num_columns) for e in meta.column(i).encodings}
    assert {"DELTA_BYTE_ARRAY", "DELTA_BINARY_PACKED", "RLE_DICTIONARY"} <= used
    assert meta.column(0).compression == "ZSTD"
    # Floats are PLAIN: BYTE_STREAM_SPLIT (which Spark 3.5's vectorized reader rejects) is
    # used nowhere, in no column of any row group.
    for path in paths:
        meta = pq.read_metadata(path)
        chunks = [
            meta.row_group(g).column(i)
            for g in range(meta.num_row_groups)
            for i in range(meta.num_columns)
        ]
        assert not any("BYTE_STREAM_SPLIT" in c.encodings for c in chunks), path
        floats = [c for c in chunks if c.physical_type in ("FLOAT", "DOUBLE")]
        assert floats and all(set(c.encodings) == {"PLAIN", "RLE"} for c in floats), path
    spark, python = spark_python
    out = subprocess.run(
        [python, "-c", SPARK_PROBE, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT", 1)[1])
    for path in paths:
        table = pq.read_table(path)
        want = _arrow_summary(table)
        btc = table.filter(
            pq.filters_to_expression(
                [("symbol", "==", "BTCUSDT"), ("date", ">=", dt.date(2021, 1, 1)),
                 ("date", "<=", dt.date(2021, 1, 5))]
            )
        ).sort_by("date").to_pylist()  # fmt: skip
        for reader in ("true", "false"):  # Spark's vectorized reader, then parquet-mr's
            got = result[reader][str(path)]
            where = f"Spark {result['version']} vectorized={reader} on {path.name}"
            # Both readers of both Sparks (3.5's vectorized one included) read every column.
            assert "error" not in got, f"{where}: {got}"
            assert result["version"].startswith("3.5." if spark == "3.5" else "4."), where
            assert got["rows"] == table.num_rows, where
            for key, value in want.items():
                if isinstance(value, float):
                    assert got["summary"][key] == pytest.approx(value, rel=1e-9), (where, key)
                elif key.endswith(":max"):  # Spark's text: "2021-07-01 09:10:15.6"
                    parse = dt.datetime if isinstance(value, dt.datetime) else dt.date
                    assert parse.fromisoformat(got["summary"][key]) == value, (where, key)
                else:
                    assert got["summary"][key] == value, (where, key)
            assert len(got["sample"]) == len(btc) == 5, where
            for spark_row, arrow_row in zip(got["sample"], btc, strict=True):
                assert spark_row["url" if "url" in spark_row else "symbol"] == str(
                    arrow_row["url" if "url" in arrow_row else "symbol"]
                )
                assert float(spark_row["quote_volume_usdt"]) == arrow_row["quote_volume_usdt"]
