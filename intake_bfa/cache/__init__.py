"""The local cache: its on-disk layout, locks, atomic writes, refs and sidecars (``layout``),
and its maintenance: status, clear, prune, refresh, verify (``admin``)."""
