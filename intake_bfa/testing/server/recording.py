"""Request recording: every request on every origin, with the status it was answered."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class RecordedRequest:
    """One request received by a :class:`~.ReleaseServer`.

    Attributes
    ----------
    origin : str
        ``"api"``, ``"web"``, ``"objects"`` or ``"uploads"``.
    method : str
        HTTP method, e.g. ``"GET"``.
    path : str
        Path plus query string, exactly as sent (still percent-encoded).
    headers : dict of str to str
        Request headers as received.
    status : int
        Status code answered (for cut-short responses, the status line that was sent).
    """

    origin: str
    method: str
    path: str
    headers: dict[str, str]
    status: int


class Recorder:
    """The list of :class:`RecordedRequest` a server exposes, appended under a lock.

    Attributes
    ----------
    requests : list of RecordedRequest
        Every request recorded so far; the same list object for the recorder's lifetime.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []

    def hook(self, origin: str) -> Any:
        """An ``on_response_prepare`` signal handler recording requests on ``origin``."""

        # Runs right before the status line goes out, so it sees the status really sent,
        # also for responses later cut short and for aiohttp's own error pages.
        async def hook(request: web.Request, response: web.StreamResponse) -> None:
            headers = dict(request.headers)
            rec = RecordedRequest(
                origin, request.method, request.raw_path, headers, response.status
            )
            with self._lock:
                self.requests.append(rec)

        return hook

    def clear(self) -> None:
        """Forget all recorded requests."""
        with self._lock:
            self.requests.clear()

    def count(self, origin: str | None, path_contains: str) -> int:
        """Count recorded requests on ``origin`` (any if None) whose path contains a string."""
        with self._lock:
            return sum(
                origin in (None, r.origin) and path_contains in r.path for r in self.requests
            )
