"""``bfa mirror``: copy releases to an S3-compatible bucket, verified and idempotent
(``sync``), from a release folder or the cache (``source``) through s3fs (``store``)."""
