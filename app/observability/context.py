"""The ids a log line carries: request, job and forget request, bound for one unit of work.

Context variables rather than thread-locals: an API request's id set by the middleware follows the
request into the thread pool (anyio copies the context), and never leaks into another request.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

FIELDS = ("request_id", "job_id", "forget_request_id")
_VARS: dict[str, ContextVar[str | None]] = {name: ContextVar(name, default=None) for name in FIELDS}


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Bind ids (``None`` values are skipped) for the duration of the block."""
    tokens = [(name, _VARS[name].set(str(value))) for name, value in ids.items() if value is not None]
    try:
        yield
    finally:
        for name, token in reversed(tokens):
            _VARS[name].reset(token)


def current() -> dict[str, str]:
    """The ids bound now, only those that are set."""
    values = {name: var.get() for name, var in _VARS.items()}
    return {name: value for name, value in values.items() if value is not None}


def request_id() -> str | None:
    return _VARS["request_id"].get()
