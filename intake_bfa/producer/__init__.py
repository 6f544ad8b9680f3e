"""The producer: builds and publishes the datasets. Never imported by the consumer path.

``collect`` (with ``s3`` and ``volume``) lists Binance Vision into the collected ``state``;
``build``, ``validate`` and ``release`` turn the state into a release folder (Parquet, DuckDB,
manifest, catalog); ``release_folder``, ``publish`` and ``github_write`` publish it as a
GitHub release; ``mirror/`` copies releases to an S3-compatible bucket and ``stats/`` reads
their download counts.
"""
