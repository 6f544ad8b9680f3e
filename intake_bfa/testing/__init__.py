"""Real parts for tests, the demo and benchmarks: a deterministic synthetic sample
(``synthetic``), releases built from it (``releases``), a local GitHub-like release server
on 127.0.0.1 with fault injection (``server/``), a bounded HTTP load generator (``loadgen``)
and ``bfa serve`` in a subprocess (``serve_process``). Never imported by the consumer path.
"""
