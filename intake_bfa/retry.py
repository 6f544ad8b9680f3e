"""Retries for HTTP work: which failures, how long to wait, when to give up.

Retried: 408/425/429/5xx, connection resets, cut-off bodies, read timeouts and
expired signed redirects (each retry asks the *original* URL again, so a fresh
signature is issued). Never retried: other 4xx, refused connections, unknown
hosts. The wait honours ``Retry-After`` (seconds or an HTTP date) and GitHub's
``X-RateLimit-Reset``; otherwise it is full-jitter exponential backoff. Attempts
and the total waiting time are bounded (``BFA_RETRIES``, ``BFA_RETRY_TIME``).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from .config import Settings
from .errors import DownloadError, RateLimitError

log = logging.getLogger(__name__)

T = TypeVar("T")
_BACKOFF_CAP = 30.0  # no single backoff sleep longer than this


def is_retryable(err: BaseException) -> bool:
    """True for failures another attempt may cure (5xx, 408/425/429, resets, timeouts)."""
    return isinstance(err, DownloadError) and bool(err.context.get("retryable"))


def _retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now) if when else None


def delay_for(err: DownloadError, attempt: int, settings: Settings, rng: random.Random) -> float:
    """Seconds to wait before attempt ``attempt + 1`` after ``err``.

    Parameters
    ----------
    err
        The retryable failure.
    attempt
        How many attempts have failed so far (1 after the first failure).
    settings
        Supplies the backoff base.
    rng
        Source of jitter.
    """
    now = time.time()
    hinted = _retry_after(err.context.get("retry_after"), now)
    if hinted is not None:
        return hinted
    if isinstance(err, RateLimitError) and err.context.get("reset"):
        return max(0.0, float(err.context["reset"]) - now)
    # Full jitter (AWS architecture blog): spreads a crowd of clients evenly.
    return rng.uniform(0, min(_BACKOFF_CAP, settings.retry_backoff * 2 ** (attempt - 1)))


def with_retries(
    action: Callable[[], T],
    settings: Settings,
    *,
    what: str,
    on_retry: Callable[[DownloadError], None] | None = None,
    rng: random.Random | None = None,
) -> T:
    """Run ``action`` until it succeeds, retrying retryable :class:`DownloadError` s.

    Parameters
    ----------
    action
        Does one complete attempt (it must re-request the original URL).
    settings
        ``retries`` (attempts) and ``retry_time`` (total seconds of waiting).
    what
        Short description for log messages (no secrets).
    on_retry
        Called with the error before each wait (e.g. to keep a partial download).
    rng
        Jitter source (tests may pass a seeded one).

    Raises
    ------
    DownloadError
        The last error, when it is not retryable or the budget is spent.
    """
    rng = rng or random.Random()
    waited = 0.0
    attempt = 0
    while True:
        attempt += 1
        try:
            return action()
        except DownloadError as err:
            if not is_retryable(err) or attempt >= settings.retries:
                raise
            delay = delay_for(err, attempt, settings, rng)
            if waited + delay > settings.retry_time:
                log.warning(
                    "giving up on %s: waiting %.1f s more would exceed BFA_RETRY_TIME=%.0f s",
                    what,
                    delay,
                    settings.retry_time,
                )
                raise
            log.warning(
                "%s failed (%s); retry %d/%d in %.2f s",
                what,
                err,
                attempt,
                settings.retries - 1,
                delay,
            )
            if on_retry is not None:
                on_retry(err)
            time.sleep(delay)
            waited += delay
