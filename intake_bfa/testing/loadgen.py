"""A bounded HTTP load generator for loopback tests and benchmarks of ``bfa serve``.

``concurrency`` clients (asyncio tasks sharing one aiohttp connection pool sized to
them) take request paths from a fixed list, round-robin, until ``requests`` have been
sent: the total work is bounded, so a slow server makes the run longer, never
larger. Each client keeps one request in flight (a closed loop), like a user waiting
for an answer before asking the next question.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    """What a load run observed.

    Attributes
    ----------
    latencies
        Seconds per completed request (status received and body read), in completion order.
    statuses
        Count of each HTTP status.
    errors
        Count of each transport error (connection refused, timeout...) by type name.
    elapsed
        Wall seconds of the whole run.
    bytes
        Response body bytes read.
    """

    latencies: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    elapsed: float = 0.0
    bytes: int = 0

    @property
    def throughput(self) -> float:
        """Completed requests per second."""
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100), seconds (nearest-rank)."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]

    def summary(self) -> dict:
        """JSON-ready figures (milliseconds)."""
        return {
            "requests": len(self.latencies),
            "throughput_rps": round(self.throughput, 1),
            "p50_ms": round(1e3 * self.percentile(50), 2),
            "p99_ms": round(1e3 * self.percentile(99), 2),
            "mean_ms": round(1e3 * statistics.fmean(self.latencies), 2) if self.latencies else None,
            "statuses": dict(self.statuses),
            "errors": dict(self.errors),
        }


async def _run(
    base_url: str, paths: Sequence[str], concurrency: int, requests: int, timeout: float
) -> LoadResult:
    import aiohttp

    result = LoadResult()
    counter = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async with aiohttp.ClientSession(
        base_url.rstrip("/"), connector=connector, timeout=client_timeout
    ) as session:

        async def client() -> None:
            for i in counter:  # shared iterator: the total stays bounded
                path = paths[i % len(paths)]
                t0 = time.perf_counter()
                try:
                    async with session.get(path) as response:
                        body = await response.read()
                except (TimeoutError, aiohttp.ClientError) as err:
                    result.errors[type(err).__name__] += 1
                    continue
                result.latencies.append(time.perf_counter() - t0)
                result.statuses[response.status] += 1
                result.bytes += len(body)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result


def run_load(
    base_url: str,
    paths: Sequence[str],
    *,
    concurrency: int,
    requests: int,
    timeout: float = 30.0,
) -> LoadResult:
    """Send ``requests`` GETs of ``paths`` (round-robin) with ``concurrency`` clients.

    Parameters
    ----------
    base_url
        ``http://127.0.0.1:PORT`` of the server under load.
    paths
        Request paths with query strings, e.g. ``/v1/snapshot?date=2021-03-04``.
    concurrency
        Clients, each with one request in flight.
    requests
        Total requests of the run.
    timeout
        Seconds allowed per request before it counts as an error.
    """
    if concurrency < 1 or requests < 1 or not paths:
        raise ValueError("need concurrency >= 1, requests >= 1 and at least one path")
    return asyncio.run(_run(base_url, list(paths), concurrency, requests, timeout))
