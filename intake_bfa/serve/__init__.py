"""``bfa serve``: a read-only HTTP API over pinned, cached versions of the datasets.

* :mod:`.engine`: the versions served (pinned and fetched at start), query pools, limits;
* :mod:`.app`: the FastAPI routes and the JSON error model;
* :mod:`.encode`: JSON, CSV and Parquet bodies;
* :mod:`.access_log`: one structured log record per request;
* :mod:`.runner`: uvicorn on a bound socket.

Needs the ``serve`` extra (``pip install 'intake-bfa[serve]'``); nothing here is
imported by ``import intake_bfa``.
"""
