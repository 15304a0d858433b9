"""Database work for async endpoints in one worker-thread hop.

A plain FastAPI endpoint with a sync session dependency crosses between the event loop and the
thread pool four times per request (dependency enter, endpoint, response validation, dependency
exit), and under load every crossing waits for the GIL behind other threads. The hot endpoints
(submit and poll) run their whole unit of work here instead: open a session, call the service,
commit when asked, close, in one hop, and answer with JSON the response model already produced
(measured per request, sequentially: a poll went from 3.5 to 2.3 ms of API CPU together with the
read-only session; see benchmarks/results/service.md for the service under load).

They run on a few threads of their own (``UNLEARND_API_HOT_THREADS``), not on the 40 of the shared
pool: at 50 clients on 2 cores, up to 40 units at once were runnable and each waited for a CPU
(Linux schedstat: the API's threads waited four times as long as they ran), so a unit's dozen
round trips each cost milliseconds. In interleaved 25 s runs of the service benchmark's 50 clients
(not committed), POST p99 was 333-442 ms with 40 threads (5 runs) and 153-262 ms with 4 (7 runs),
p50 75-98 and 44-74 ms; 8 gave 236-243 ms. The units wait in the event loop instead.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

from anyio import CapacityLimiter, to_thread
from pydantic import BaseModel
from sqlalchemy.orm import Session
from starlette.responses import Response

from app.db import commit, new_session
from app.db.session import new_read_session
from app.settings import get_settings

T = TypeVar("T")

# one limiter per event loop (a limiter belongs to the loop it was made in; tests run several)
_limiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, CapacityLimiter] = weakref.WeakKeyDictionary()


def _hot_path_limiter() -> CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = _limiters[loop] = CapacityLimiter(get_settings().api_hot_threads)
    return limiter


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

    return await to_thread.run_sync(unit, limiter=_hot_path_limiter())


def json_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The model as JSON, serialised once by pydantic (FastAPI would validate it again first)."""
    return Response(model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json")
