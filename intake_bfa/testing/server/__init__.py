"""A local stand-in for GitHub Releases, served over real sockets.

:class:`ReleaseServer` serves the three hosts a release download touches (REST API, github.com
download redirects, signed object store) plus the uploads host a publisher writes to, from a
background thread, implements the subset of GitHub that download clients and publishers rely
on, and injects faults so retry and resume paths are testable.

Modules: :mod:`.core` (the server and its lifecycle), :mod:`.store` (repositories, releases,
assets and their JSON), :mod:`.api`, :mod:`.objects` and :mod:`.writes` (the origins'
handlers), :mod:`.faults` (fault injection), :mod:`.recording` and :mod:`.errors`.
"""

from __future__ import annotations

from intake_bfa.testing.server.core import ReleaseServer
from intake_bfa.testing.server.recording import RecordedRequest

__all__ = ["RecordedRequest", "ReleaseServer"]
