"""When the client tries again: 429 and 503 answers, and connection failures.

The backoff is tenacity's (exponential with jitter); a ``Retry-After`` header, when the API sends
one (its 503 for an unreachable database does), replaces the computed wait. A failure after the
request may have reached the server (a dropped connection, a read timeout) is retried only when a
repeat cannot do the work twice: reads, and POSTs that carry an Idempotency-Key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_random,
)
from tenacity.wait import wait_base

RETRY_STATUSES = frozenset({429, 503})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6  # in all, the first one included
    max_elapsed_s: float = 60.0  # no new attempt starts after this long
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_retry_after_s: float = 60.0  # a longer Retry-After is cut to this


NO_RETRY = RetryPolicy(attempts=1)


class RetryableStatus(Exception):
    """An answer worth another try; holds the response so the last one can become an ApiError."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        super().__init__(f"{response.status_code} {response.reason_phrase}")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait: ``Retry-After`` is either delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class wait_retry_after(wait_base):  # noqa: N801 - named like tenacity's own wait strategies
    """The server's Retry-After when it sent one (capped), the fallback strategy otherwise."""

    def __init__(self, fallback: wait_base, cap_s: float):
        self.fallback = fallback
        self.cap_s = cap_s

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        after = getattr(error, "retry_after", None)
        if after is not None:
            return min(after, self.cap_s)
        return self.fallback(retry_state)


def is_replay_safe(request: httpx.Request) -> bool:
    return request.method in SAFE_METHODS or "Idempotency-Key" in request.headers


def _retryable(request: httpx.Request):
    def check(error: BaseException) -> bool:
        if isinstance(error, RetryableStatus):
            return True
        if isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            return True  # the request never reached the server: always safe to send again
        return isinstance(error, httpx.TransportError) and is_replay_safe(request)

    return check


def retrying(policy: RetryPolicy, request: httpx.Request) -> Retrying:
    # exponential with jitter, spelled so that every tenacity 9.x has it
    backoff = wait_exponential(multiplier=policy.initial_backoff_s, max=policy.max_backoff_s) + wait_random(
        0, policy.initial_backoff_s
    )
    return Retrying(
        stop=stop_after_attempt(policy.attempts) | stop_before_delay(policy.max_elapsed_s),
        wait=wait_retry_after(backoff, policy.max_retry_after_s),
        retry=retry_if_exception(_retryable(request)),
        reraise=True,
    )
