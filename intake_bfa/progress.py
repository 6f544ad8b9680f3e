"""Progress on a terminal, through fsspec's ``Callback`` interface.

The engine reports each phase (download, then decompression; again after a
resume) with ``set_size`` followed by ``relative_update`` calls. fsspec's own
``TqdmCallback`` keeps one running value for all of them; :class:`TerminalProgress`
draws one tqdm bar per phase instead. Library users pass any fsspec ``Callback``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from fsspec.callbacks import Callback


class TerminalProgress(Callback):
    """One tqdm bar per reported phase, closed when the next phase starts or on ``close``.

    Parameters
    ----------
    stream
        Where to draw (a terminal).
    label
        Text in front of every bar.
    """

    def __init__(self, stream: Any = None, label: str = "bfa") -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self.label = label
        self.bar: Any = None
        self.phase = 0

    def set_size(self, size: int | None) -> None:
        from tqdm import tqdm

        self.close()
        self.phase += 1
        try:
            width, height = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):
            width = height = 0
        self.bar = tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            file=self.stream,
            leave=True,
            desc=self.label if self.phase == 1 else f"{self.label} ({self.phase})",
            mininterval=0.1,
            # A terminal reporting no size (some ptys, CI) would hide the bar entirely.
            ncols=None if width else 80,
            nrows=None if height else 24,
        )

    def relative_update(self, inc: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(inc)

    def close(self) -> None:
        """Finish the current bar (prints its final state)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_callback(quiet: bool = False, stream: Any = None, label: str = "bfa") -> Any:
    """A :class:`TerminalProgress` when ``stream`` (default stderr) is a terminal, else None."""
    stream = stream or sys.stderr
    if quiet or not getattr(stream, "isatty", lambda: False)():
        return None
    return TerminalProgress(stream, label)
