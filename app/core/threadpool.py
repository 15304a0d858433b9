"""Database work for async endpoints in one worker-thread hop.

A plain FastAPI endpoint with a sync session dependency crosses between the event loop and the
thread pool four times per request (dependency enter, endpoint, response validation, dependency
exit), and under load every crossing waits for the GIL behind other threads. The hot endpoints
(submit and poll) run their whole unit of work here instead: open a session, call the service,
commit when asked, close, in one hop, and answer with JSON the response model already produced
(measured per request, sequentially: a poll went from 3.5 to 2.3 ms of API CPU together with the
read-only session; see benchmarks/results/service.md for the service under load).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from app.db import commit, new_session
from app.db.session import new_read_session

T = TypeVar("T")


async def in_session(work: Callable[[Session], T], *, write: bool = False) -> T:
    """``work(session)`` in one thread hop; ``write=True`` commits its transaction, otherwise it runs
    on a read-only session (no BEGIN/ROLLBACK round trips on Postgres; a flush raises)."""

    def unit() -> T:
        session = new_session() if write else new_read_session()
        try:
            result = work(session)
            if write:
                commit(session)
            return result
        finally:
            session.close()

    return await run_in_threadpool(unit)


def json_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The model as JSON, serialised once by pydantic (FastAPI would validate it again first)."""
    return Response(model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json")
