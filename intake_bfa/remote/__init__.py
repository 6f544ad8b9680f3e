"""Remote queries: DuckDB over a release's Parquet by HTTP range requests, no download.

``relation`` builds DuckDB relations and connections over a release; ``http_fs`` is the
read-only fsspec filesystem that serves DuckDB's range reads. The public names are here:

>>> from intake_bfa import remote
>>> rel = remote.remote_relation("daily_availability", symbols=["BTCUSDT"])
"""

from intake_bfa.remote.http_fs import PROTOCOL, RemoteFile, RemoteFileSystem
from intake_bfa.remote.relation import (
    attach,
    duckdb_needs_one_thread,
    filesystem_of,
    httpfs_available,
    remote_connection,
    remote_relation,
    remote_tables,
    remote_url,
)

__all__ = [
    "PROTOCOL",
    "RemoteFile",
    "RemoteFileSystem",
    "attach",
    "duckdb_needs_one_thread",
    "filesystem_of",
    "httpfs_available",
    "remote_connection",
    "remote_relation",
    "remote_tables",
    "remote_url",
]
