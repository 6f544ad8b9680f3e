"""A local demo release (SYNTHETIC data) for notebooks and tutorials: :func:`start_demo`.

It serves releases built by :mod:`intake_bfa.testing` on 127.0.0.1 and points this process's
configuration at them; ``bfa demo`` (:mod:`intake_bfa.cli.demo`) walks through the same.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

_DEMO_ENV = ("BFA_API_URL", "BFA_REPO", "BFA_CACHE_DIR", "BFA_OFFLINE")


class DemoRelease:
    """A running local demo release (SYNTHETIC data); see :func:`start_demo`.

    Attributes
    ----------
    catalog_path : pathlib.Path
        Catalog file pointing at the local release server.
    api_url : str
        The local server's API origin (127.0.0.1).
    repo : str
        The synthetic repository name.
    note : str
        States that the data is SYNTHETIC, not real Binance data.
    """

    def __init__(self, work: Path, server, repo: str, saved_env: dict[str, str | None]) -> None:
        from intake_bfa.testing.synthetic import SYNTHETIC_NOTE

        self.work = work
        self.catalog_path = work / "catalog.yaml"
        self.api_url: str = server.api_url
        self.repo = repo
        self.note = "SYNTHETIC demo data: " + SYNTHETIC_NOTE
        self._server = server
        self._saved_env = saved_env

    def stop(self) -> None:
        """Stop the server, restore the environment and delete the demo files."""
        if self._server is None:
            return
        self._server.stop()
        self._server = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> DemoRelease:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._server is not None else "stopped"
        return f"<DemoRelease {state} at {self.api_url}; catalog {self.catalog_path}>\n{self.note}"


def start_demo(symbols: int = 60) -> DemoRelease:
    """Start a local demo release (SYNTHETIC data) for notebooks and tutorials.

    Builds two small synthetic dated releases in a temporary directory, serves them
    on 127.0.0.1, points ``BFA_API_URL``/``BFA_REPO``/``BFA_CACHE_DIR`` of this
    process at them (a private cache; ``BFA_OFFLINE`` is cleared) and writes a
    catalog file. Call :meth:`DemoRelease.stop` to undo all of it.
    """
    from intake_bfa.catalog import catalog_yaml
    from intake_bfa.testing.releases import SAMPLE_REPO, SampleReleases
    from intake_bfa.testing.server import ReleaseServer

    work = Path(tempfile.mkdtemp(prefix="bfa-demo-"))
    saved_env = {k: os.environ.get(k) for k in _DEMO_ENV}
    server = ReleaseServer()
    try:
        today = dt.datetime.now(dt.UTC).date()
        versions = [(today - dt.timedelta(days=3)).isoformat(), today.isoformat()]
        server.start()
        SampleReleases(work / "releases", n_symbols=symbols).publish(
            server, SAMPLE_REPO, versions=versions
        )
        demo = DemoRelease(work, server, SAMPLE_REPO, saved_env)
        demo.catalog_path.write_text(catalog_yaml(repo=SAMPLE_REPO, api_url=server.api_url))
    except BaseException:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
        raise
    os.environ.update(
        BFA_API_URL=server.api_url, BFA_REPO=SAMPLE_REPO, BFA_CACHE_DIR=str(work / "cache")
    )
    os.environ.pop("BFA_OFFLINE", None)
    return demo
