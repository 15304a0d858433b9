"""Structured logs, request ids and worker heartbeats, without servers."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time

import pytest

from app.observability import context
from app.observability.logs import JsonFormatter, TextFormatter, configure_logging
from app.observability.request_id import RequestIdMiddleware
from app.settings import Settings, get_settings
from app.worker_status.store import MemoryHeartbeats


def _record(msg: str = "hello %s", args=("world",), exc_info=None, **extra) -> logging.LogRecord:
    record = logging.LogRecord("unlearnd.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_the_fields_and_the_bound_ids():
    with context.bound(request_id="r-1", job_id="j-1", forget_request_id=None):
        line = JsonFormatter().format(_record(route="/v1/jobs/{job_id}", status=200))
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "unlearnd.test"
    assert entry["message"] == "hello world" and entry["timestamp"].endswith("+00:00")
    assert entry["request_id"] == "r-1" and entry["job_id"] == "j-1"
    assert "forget_request_id" not in entry  # None is not bound
    assert entry["route"] == "/v1/jobs/{job_id}" and entry["status"] == 200  # from extra=
    assert "args" not in entry and "msg" not in entry  # LogRecord internals stay out


def test_json_is_one_line_even_for_tracebacks_and_newlines():
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record("two\nlines", args=(), exc_info=sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "two\nlines" and "ValueError: boom" in entry["exception"]


def test_ids_are_unbound_after_the_block_and_nest():
    assert context.current() == {}
    with context.bound(request_id="outer"):
        with context.bound(request_id="inner", job_id="j"):
            assert context.current() == {"request_id": "inner", "job_id": "j"}
        assert context.current() == {"request_id": "outer"}
    assert context.current() == {} and context.request_id() is None


def test_text_lines_append_the_bound_ids():
    formatter = TextFormatter("%(levelname)s %(message)s")
    assert formatter.format(_record()) == "WARNING hello world"
    with context.bound(job_id="j-9"):
        assert formatter.format(_record()) == "WARNING hello world job_id=j-9"


@pytest.fixture
def root_logger_restored():
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    access = logging.getLogger("uvicorn.access")
    saved_access = (list(access.handlers), access.propagate)
    yield root
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    access.handlers[:], access.propagate = saved_access


def test_configure_logging_is_idempotent_and_leaves_other_handlers(root_logger_restored):
    root = root_logger_restored
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    configure_logging(Settings(log_format="json", log_level="DEBUG"))
    configure_logging(Settings(log_format="json", log_level="DEBUG"))
    ours = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    assert len(ours) == 1 and foreign in root.handlers and root.level == logging.DEBUG
    configure_logging(Settings(log_format="text"))
    assert not [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    assert not logging.getLogger("uvicorn.access").hasHandlers()  # our middleware writes access lines


def test_log_format_setting_accepts_only_text_or_json(monkeypatch):
    monkeypatch.delenv("UNLEARND_LOG_FORMAT", raising=False)  # the integration stack sets it
    assert Settings().log_format == "text"
    with pytest.raises(ValueError):
        Settings(log_format="xml")


def _call(app, headers: list[tuple[bytes, bytes]]) -> tuple[dict, list[str | None]]:
    """Run one GET through the middleware; return the response start and the ids the app saw."""
    seen: list[str | None] = []

    async def inner(scope, receive, send):
        seen.append(context.request_id())
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    asyncio.run(RequestIdMiddleware(inner)(scope, receive, send))
    return sent[0], seen


def test_request_id_is_honoured_returned_and_bound():
    start, seen = _call(RequestIdMiddleware, [(b"x-request-id", b"client-abc.1")])
    assert seen == ["client-abc.1"] and (b"x-request-id", b"client-abc.1") in start["headers"]
    assert context.request_id() is None  # unbound once the request is done


@pytest.mark.parametrize("value", [b"", b"has space", b"x" * 129, b"line\nbreak", b'{"json":1}'])
def test_unsafe_request_ids_are_replaced(value):
    start, seen = _call(RequestIdMiddleware, [(b"x-request-id", value)])
    rid = dict(start["headers"])[b"x-request-id"].decode()
    assert rid != value.decode(errors="replace") and len(rid) == 32 and seen == [rid]


def test_memory_heartbeats_expire():
    store = MemoryHeartbeats()
    store.put("a", {"name": "a"}, ttl_s=60)
    store.put("b", {"name": "b"}, ttl_s=0.05)
    time.sleep(0.1)
    assert store.alive() == [{"name": "a"}]
    store.remove("a")
    assert store.alive() == []


@pytest.fixture
def beater(monkeypatch):
    from workers import heartbeat
    from workers.heartbeat import Beater

    monkeypatch.setattr(heartbeat, "POLL_S", 0.05)
    monkeypatch.setenv("UNLEARND_WORKER_HEARTBEAT_INTERVAL_S", "60")  # the beat's TTL comes from it
    get_settings.cache_clear()
    beater = Beater("w1@host", ["q"], MemoryHeartbeats(), interval_s=60)
    beater.start()
    yield beater
    beater.stop()
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def running_job():
    """Puts a run_job request into the worker's active set, as the pool does when a job starts."""
    from celery.worker import state

    from app.queue import RUN_JOB

    request = _Request(name=RUN_JOB, id="0192-job", time_start=time.time())
    state.active_requests.add(request)
    yield request
    state.active_requests.discard(request)


def _job_of(store) -> str | None:
    beats = store.alive()
    return (beats[0]["current_job"] or {}).get("id") if beats else "no beat"


def test_the_worker_beats_at_once_with_its_current_job(beater, running_job):
    from celery.worker import state

    store = beater.store
    _wait(lambda: _job_of(store) == "0192-job")  # within a poll, not after the 60 s interval
    beat = store.alive()[0]
    assert beat["name"] == "w1@host" and beat["queues"] == ["q"] and beat["pid"] > 0
    assert beat["device_classes"] == [] and beat["device"]["type"] == "cpu"  # no job queue; no GPU here
    state.active_requests.discard(running_job)
    _wait(lambda: _job_of(store) is None)
    beater.stop()  # idle: leaves at once
    assert store.alive() == []


def test_a_stopping_worker_beats_until_its_job_is_done(beater, running_job):
    from celery.worker import state

    store = beater.store
    _wait(lambda: _job_of(store) == "0192-job")
    beater.stop()  # a warm shutdown: the pool is still finishing the job
    time.sleep(0.3)  # several polls
    assert _job_of(store) == "0192-job"
    state.active_requests.discard(running_job)
    _wait(lambda: store.alive() == [])


class _Request:
    """Stands in for celery's Request (the worker's active set holds weak references)."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


def _wait(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_an_unexpected_error_answers_with_the_request_id_as_trace_id(caplog):
    import httpx
    from fastapi import FastAPI

    from app.core import handlers

    app = FastAPI()
    handlers.install(app)
    app.add_middleware(RequestIdMiddleware)

    @app.get("/boom")
    async def boom():
        raise RuntimeError("kaboom")

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/boom", headers={"X-Request-ID": "trace-me-1"})

    with caplog.at_level(logging.ERROR, logger="app.core.handlers"):
        resp = asyncio.run(call())
    assert resp.status_code == 500 and resp.json()["trace_id"] == "trace-me-1"
    assert resp.headers["x-request-id"] == "trace-me-1"
    assert any("trace-me-1" in r.getMessage() and r.exc_info for r in caplog.records)
