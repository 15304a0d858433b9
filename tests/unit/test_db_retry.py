"""The worker's retry of its state writes while the database is unreachable (workers/runner/db_retry.py):
connection failures are retried with a growing wait until the deadline, anything else is an answer."""

from __future__ import annotations

import logging
import time

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from app.settings import get_settings
from workers.runner.db_retry import with_db_retry


@pytest.fixture
def retry_for(monkeypatch):
    def set_deadline(seconds: float) -> None:
        monkeypatch.setenv("UNLEARND_WORKER_DB_RETRY_S", str(seconds))
        get_settings.cache_clear()

    yield set_deadline
    monkeypatch.undo()
    get_settings.cache_clear()


def _failing(times: int, error: Exception, calls: list[float]):
    def write() -> str:
        calls.append(time.monotonic())
        if len(calls) <= times:
            raise error
        return "written"

    return write


def _down() -> OperationalError:
    return OperationalError("UPDATE jobs", {}, ConnectionRefusedError("connection refused"))


def test_a_write_is_retried_through_an_outage_with_growing_waits(retry_for, caplog):
    retry_for(30)
    calls: list[float] = []
    with caplog.at_level(logging.WARNING, logger="workers.runner.db_retry"):
        assert with_db_retry(_failing(2, _down(), calls), "job x progress") == "written"
    assert len(calls) == 3
    waits = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    assert 0.2 <= waits[0] < 0.35 and 0.4 <= waits[1] < 0.6, waits
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "database unreachable while writing job x progress (OperationalError); retrying in 0.2 s",
        "database unreachable while writing job x progress (OperationalError); retrying in 0.4 s",
    ]


def test_an_error_that_is_an_answer_is_raised_at_once(retry_for):
    retry_for(30)
    calls: list[float] = []
    conflict = IntegrityError("INSERT", {}, ValueError("duplicate key"))
    with pytest.raises(IntegrityError):
        with_db_retry(_failing(5, conflict, calls), "job x result")
    assert len(calls) == 1


def test_the_outage_outlasting_the_deadline_raises_the_last_error(retry_for):
    retry_for(0.5)  # waits of 0.2 s, then 0.4 s would end past it: two tries, no wait beyond the deadline
    calls: list[float] = []
    started = time.monotonic()
    with pytest.raises(OperationalError):
        with_db_retry(_failing(100, _down(), calls), "job x end")
    assert len(calls) == 2 and time.monotonic() - started < 0.5
