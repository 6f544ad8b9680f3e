"""The :class:`ReleaseServer` itself: the event-loop thread, the four sites, the public API."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from intake_bfa.testing.server.api import ApiOrigin
from intake_bfa.testing.server.errors import not_found
from intake_bfa.testing.server.faults import FaultQueue
from intake_bfa.testing.server.objects import DownloadOrigins, Signer
from intake_bfa.testing.server.recording import RecordedRequest, Recorder
from intake_bfa.testing.server.store import Store
from intake_bfa.testing.server.writes import WriteOrigins

log = logging.getLogger(__package__)

_ORIGINS = ("api", "web", "objects", "uploads")


class ReleaseServer:
    """In-process fake of GitHub Releases on four local HTTP origins.

    Parameters
    ----------
    token : str, optional
        Token that authenticates API requests (``Authorization: Bearer <token>`` or
        ``token <token>``); authenticated requests see drafts and get free 304s. Any other
        token is treated as anonymous. Writes (create, edit and delete releases, assets and
        tags; uploads) require it and answer 401 otherwise.
    signed_url_ttl : float
        Seconds an objects-origin signed URL stays valid.
    rate_limit : int
        API requests allowed (per server lifetime) before the API answers 403.
    chunk_size : int
        Bytes per write when streaming response bodies.

    Attributes
    ----------
    requests : list of RecordedRequest
        Every request on the four origins, appended (under a lock) as its response starts.
        An upload the server cut off (``"reset"``/``"truncate"`` faults on ``"uploads"``) is
        recorded with status 499, though no status line was sent.

    Examples
    --------
    >>> with ReleaseServer() as srv:  # doctest: +SKIP
    ...     rel = srv.add_release("o/r", "v1", {"a.csv": b"x,y\\n"})
    ...     urllib.request.urlopen(rel["assets"][0]["browser_download_url"]).read()
    """

    api_url = property(lambda self: self._url("api"), doc="REST API origin (api.github.com).")
    web_url = property(lambda self: self._url("web"), doc="github.com origin (downloads).")
    objects_url = property(lambda self: self._url("objects"), doc="Signed object store origin.")
    uploads_url = property(lambda self: self._url("uploads"), doc="Uploads (uploads.github.com).")

    def __init__(
        self,
        *,
        token: str | None = None,
        signed_url_ttl: float = 300.0,
        rate_limit: int = 5000,
        chunk_size: int = 256 * 1024,
    ) -> None:
        chunk_size = max(1, chunk_size)
        self._urls: dict[str, str] = {}
        self._store = Store(self._url)
        self._faults = FaultQueue(_ORIGINS)
        self._recorder = Recorder()
        signer = Signer(signed_url_ttl, self._url)
        self._api = ApiOrigin(
            self._store, signer, self._url, token=token, limit=rate_limit, chunk_size=chunk_size
        )
        self._downloads = DownloadOrigins(self._store, signer, chunk_size=chunk_size)
        self._writes = WriteOrigins(self._store, self._api.authed)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self.requests: list[RecordedRequest] = self._recorder.requests

    def _url(self, origin: str) -> str:
        if origin not in self._urls:
            raise RuntimeError("ReleaseServer is not started; call start() first")
        return self._urls[origin]

    def start(self) -> ReleaseServer:
        """Bind four ports on 127.0.0.1 and serve them from a daemon thread.

        Returns
        -------
        ReleaseServer
            ``self``, so ``srv = ReleaseServer().start()`` works.
        """
        if self._loop is not None:
            raise RuntimeError("ReleaseServer is already running")
        self._writes.upload_dir = Path(tempfile.mkdtemp(prefix="bfa-uploads-"))
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name="ReleaseServer", daemon=True)
        self._thread.start()
        self._api.reset_at = int(time.time()) + 3600
        try:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(30)
        except BaseException:
            self.stop()
            raise
        log.info("ReleaseServer listening on %s", self._urls)
        return self

    def stop(self) -> None:
        """Close the sites and the loop and join the thread; safe to call twice."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None or thread is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            if self._writes.upload_dir is not None:  # uploaded assets die with the server
                shutil.rmtree(self._writes.upload_dir, ignore_errors=True)
                self._writes.upload_dir = None

    def __enter__(self) -> ReleaseServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        rel = "/repos/{o}/{r}/releases"
        # fmt: off
        routes = {"api": [("/repos/{o}/{r}", "repo"), (rel, "releases"),
                          (f"{rel}/latest", "latest"), (f"{rel}/tags/{{tag:.+}}", "tag"),
                          (rf"{rel}/{{rid:\d+}}", "id"),
                          (rf"{rel}/{{rid:\d+}}/assets", "assets"),
                          (rf"{rel}/assets/{{aid:\d+}}", "asset")],
                  "web": [("/{o}/{r}/releases/download/{tag:.+}/{name:[^/]+}", "web")],
                  "objects": [(r"/{o}/{r}/assets/{aid:\d+}", "objects")]}
        # fmt: on
        handlers = {
            "api": self._api.handle,
            "web": self._downloads.web,
            "objects": self._downloads.objects,
        }
        for origin in _ORIGINS:
            # The rate limit answers before a fault is picked, so it never uses one up.
            middlewares = [self._api.rate_limit] if origin == "api" else []
            app = web.Application(middlewares=[*middlewares, self._faults.middleware(origin)])
            if origin == "api":  # charged before recording, so recorded headers match
                app.on_response_prepare.append(self._api.on_prepare)
            app.on_response_prepare.append(self._recorder.hook(origin))
            for path, name in routes.get(origin, ()):
                app.router.add_get(path, handlers[origin], name=name)
            for method, path, handler in self._writes.routes(origin):
                app.router.add_route(method, path, handler)
            app.router.add_route("*", "/{tail:.*}", self._fallback(origin))
            # A short shutdown_timeout keeps stop() quick while a "slow" fault is sleeping.
            runner = web.AppRunner(app, shutdown_timeout=0.5)
            await runner.setup()
            self._runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            self._urls[origin] = f"http://127.0.0.1:{runner.addresses[0][1]}"

    @staticmethod
    def _fallback(origin: str) -> Any:
        async def fallback(request: web.Request) -> web.Response:
            return not_found(origin)

        return fallback

    async def _shutdown(self) -> None:
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        # Handlers still sleeping in a "slow" fault would be destroyed pending when the
        # loop closes (noisy warnings at exit): cancel them and let them unwind.
        current = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.get_running_loop().shutdown_default_executor()

    # -- state ---------------------------------------------------------------------------

    def add_repo(self, repo: str) -> None:
        """Create repository ``"owner/name"`` with no releases (no-op if it exists)."""
        self._store.add_repo(repo)

    def add_release(
        self,
        repo: str,
        tag: str,
        assets: Mapping[str, bytes | str | os.PathLike[str]],
        *,
        name: str | None = None,
        body: str = "",
        draft: bool = False,
        prerelease: bool = False,
        created_at: datetime | None = None,
        with_digest: bool = True,
    ) -> dict[str, Any]:
        """Publish a release, creating the repository if needed.

        Parameters
        ----------
        repo : str
            ``"owner/name"``.
        tag : str
            Tag name, new in ``repo``.
        assets : mapping of str to bytes, str or path-like
            Asset name to content. Bytes are kept in memory; a str or path-like is a file,
            hashed now and streamed from disk whenever it is served.
        name, body, draft, prerelease
            Release fields; ``name`` defaults to ``tag``.
        created_at : datetime, optional
            Creation (and publication) time (naive means UTC); defaults to now. The assets'
            ``created_at``/``updated_at`` are set to it too, as if uploaded back then.
        with_digest : bool
            If false, assets carry ``"digest": null`` like releases made before 2025.

        Returns
        -------
        dict
            The release JSON, as the API serves it.
        """
        return self._store.add_release(
            repo,
            tag,
            assets,
            name=name,
            body=body,
            draft=draft,
            prerelease=prerelease,
            created_at=created_at,
            with_digest=with_digest,
        )

    def replace_asset(
        self,
        repo: str,
        tag: str,
        name: str,
        data: bytes | str | os.PathLike[str],
        *,
        with_digest: bool = True,
    ) -> dict[str, Any]:
        """Re-upload asset ``name`` as a rolling release does (delete, then upload).

        Returns
        -------
        dict
            The new asset JSON: new id and digest, strictly later ``updated_at``.

        Raises
        ------
        KeyError
            If the release or the asset does not exist.
        """
        return self._store.replace_asset(repo, tag, name, data, with_digest=with_digest)

    def delete_release(self, repo: str, tag: str) -> None:
        """Delete a release and its assets (not its tag); KeyError if it does not exist."""
        self._store.delete_release(repo, tag)

    def tags(self, repo: str) -> list[str]:
        """The git tags of ``repo``, sorted (a deleted release leaves its tag behind)."""
        with self._store.lock:
            found = self._store.repo(*repo.split("/", 1))
            return sorted(found.tags) if found else []

    def clear_requests(self) -> None:
        """Forget all recorded requests."""
        self._recorder.clear()

    def count(self, origin: str | None = None, path_contains: str = "") -> int:
        """Count recorded requests on ``origin`` (any if None) whose path contains a string."""
        return self._recorder.count(origin, path_contains)

    def inject(
        self,
        origin: str,
        path_regex: str,
        fault: str,
        *,
        times: int = 1,
        status: int = 500,
        headers: Mapping[str, str] | None = None,
        after_bytes: int = 0,
        delay: float = 0.0,
        body: bytes | str = b"",
    ) -> None:
        """Queue a fault for the next ``times`` requests on ``origin`` matching a regex.

        Parameters
        ----------
        origin : {"api", "web", "objects", "uploads"}
            Origin whose requests are affected.
        path_regex : str
            ``re.search``-ed against the raw path plus query string.
        fault : str
            ``"status"`` answers ``status`` with ``headers``; ``"reset"`` (TCP RST) and
            ``"truncate"`` (clean close) cut the body after ``after_bytes``; ``"slow"``
            sleeps ``delay`` before each chunk past ``after_bytes``; ``"ignore_range"``
            answers a Range request with 200; ``"expired"`` answers 403 AccessDenied;
            ``"corrupt"`` flips bytes without changing the length; ``"lost_response"`` carries
            out a write, then answers ``status`` instead; ``"long_body"`` sends ``after_bytes``
            bytes of junk after the body (counted in Content-Length), or junk without end and
            without a length (chunked) when ``after_bytes`` is 0. On ``"uploads"``, ``"reset"`` and
            ``"truncate"`` cut the connection after receiving ``after_bytes`` of the upload
            (nothing is stored), and ``"status"`` answers before reading the body.
            ``"body"`` answers ``status`` with ``body`` as it is (JSON content type on the
            API): any release list, release or asset a real server would never send.
        times : int
            Number of matching requests the fault applies to.
        status, headers, after_bytes, delay, body
            Parameters of the fault kinds above (``body`` text is sent as UTF-8).
        """
        self._faults.add(
            origin,
            path_regex,
            fault,
            times=times,
            status=status,
            headers=headers,
            after_bytes=after_bytes,
            delay=delay,
            body=body.encode("utf-8") if isinstance(body, str) else body,
        )
