"""Retry a worker's state write while the database is unreachable (a restart, a failover).

A job's progress, its RUNNING -> VERIFYING move and its final transaction are each one short
transaction; when the connection fails, the whole transaction is run again on a fresh session (the
pool drops its dead connections on the first failure) with a capped backoff, for at most
``UNLEARND_WORKER_DB_RETRY_S``. Only connection-level failures are retried: a constraint violation
or a lost compare-and-set is an answer, not an outage. Every retried write is safe to repeat: the
transitions are compare-and-sets and the job's ownership is re-read inside each attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_before_delay, wait_exponential

from app.settings import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")


def is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


def with_db_retry(write: Callable[[], T], what: str) -> T:
    """Run ``write`` (which opens, uses and commits its own session) until it gets through: waits of
    0.2 s doubling up to 5 s, never one that would end past the deadline; then the last error."""

    def warn(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        log.warning("database unreachable while writing %s (%s); retrying in %.1f s", what, type(exc).__name__, delay)

    retrying = Retrying(
        retry=retry_if_exception(is_connection_error),
        wait=wait_exponential(multiplier=0.2, max=5.0),
        stop=stop_before_delay(get_settings().worker_db_retry_s),
        before_sleep=warn,
        reraise=True,
    )
    return retrying(write)
