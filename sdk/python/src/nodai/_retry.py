"""When to send a request again, and after how long. Pure logic: no I/O, no sleeping.

What is retried, and why it is safe:

* **503** (any method): the server answers ``metering_unavailable`` when it
  could not record the usage (so it gave no unmetered answer) and ``not_ready``
  while it catches up. Rarely, a usage event it could not confirm did land, so a
  replayed query may be metered twice; failing instead would lose the answer.
* **429** only when the caller opts in (``retry_on_rate_limit=True``): a rejected
  query was not admitted, so it is safe, but waiting is the caller's call.
* **Connection failures before the request left** (connect refused, connect
  timeout, no pooled connection): the server never saw it; any method.
* **Failures after the request may have been sent** (read timeout, connection
  reset before the answer): only ``GET`` and ``PUT`` (a partial update sets the
  same fields again). A ``POST`` may have been served: a query metered (and
  charged) twice, a key or webhook created twice. So it is raised as
  ``APIConnectionError``/``APITimeoutError`` for the caller to decide. ``DELETE``
  is not replayed either: a workflow or webhook deleted by the first try would
  come back as 404 (revoking a key again is a harmless 204). The exception is a
  request that carries an ``Idempotency-Key`` (``customers.grant_credits``
  always does): the server answers its repeat with the first answer, so it is
  replayed like a ``GET``. So is a post of usage events (``events.send``):
  the server applies each event (its ``source`` and ``id``) once, and counts
  a repeat among the ``duplicates``.

Never retried: every other status, 502/504 in particular (the query was
admitted and metered).

A ``Retry-After`` on a retried status is honoured exactly; if it asks for more
than ``max_retry_wait`` seconds the SDK does not wait at all and raises at once
(``RateLimitError.retry_after`` tells the caller how long). Otherwise the wait
is exponential: 0.5 s, 1 s, 2 s, ... capped at 8 s, minus up to 25 % jitter.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

import httpx

__all__ = ["RetryPolicy", "parse_retry_after", "backoff_delay"]

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0

#: Methods replayed after a failure that may have followed sending.
REPLAYABLE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT"})


def parse_retry_after(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        current = now if now is not None else datetime.now(timezone.utc)
        return max(0.0, (when - current).total_seconds())
    if seconds != seconds or seconds < 0:  # NaN or negative
        return None
    return seconds


def backoff_delay(retries_done: int, rand: Callable[[], float] = random.random) -> float:
    """The exponential wait before retry number ``retries_done + 1``."""
    base = min(INITIAL_DELAY * (2.0**retries_done), MAX_DELAY)
    return base * (1.0 - 0.25 * rand())


def request_never_sent(error: httpx.TransportError) -> bool:
    """True when the failure happened before any byte reached the server."""
    return isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 2
    retry_on_rate_limit: bool = False
    max_retry_wait: float = 60.0

    def after_status(
        self, retries_done: int, status: int, retry_after: Optional[float]
    ) -> Optional[float]:
        """Seconds to wait before retrying a response with ``status``, or ``None`` to raise."""
        if retries_done >= self.max_retries:
            return None
        if status == 503:
            pass
        elif status == 429 and self.retry_on_rate_limit:
            pass
        else:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_wait else None
        return backoff_delay(retries_done)

    def after_transport_error(
        self,
        retries_done: int,
        method: str,
        error: httpx.TransportError,
        *,
        idempotent: bool = False,
    ) -> Optional[float]:
        """Seconds to wait before retrying after ``error``, or ``None`` to raise.

        ``idempotent``: the request carries an ``Idempotency-Key`` (or is
        otherwise safe to repeat, as usage events are), so a repeat of it is
        answered as the first one was, whatever its method.
        """
        if retries_done >= self.max_retries:
            return None
        if isinstance(error, (httpx.UnsupportedProtocol, httpx.LocalProtocolError)):
            return None  # the request itself is wrong: a retry fails the same way
        if not request_never_sent(error) and not idempotent and method.upper() not in REPLAYABLE_METHODS:
            return None
        return backoff_delay(retries_done)
