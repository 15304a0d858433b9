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

Waiting units take a thread in priority order, writes (submits) first, then reads (polls), each in
arrival order: a submit has a pipeline waiting on its answer, a poll is asked again half a second
later anyway, and at 50 clients a burst of submits (the clients of a coalesced job that just
finished) otherwise queued behind twice as many polls. Interleaved 25 s runs of the service
benchmark at 50 clients (not committed): with 4 threads, POST p99 83 and 98 ms with the priority,
100 and 122 without (GET p99 rose from 55 and 68 to 80 and 105). With the priority, fewer threads
did better: POST p99 with 2 threads 56, 56, 58 and 77 ms (and one run of 152 in which the load
generator lagged: the API's own p99 was 101), with 3: 65 and 94, with 4: 91, 88, 77 and 74,
with 6: 146 and 108, with 1: 96 (polls then waited: GET p99 445). Hence 2.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
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

WRITE, READ = 0, 1  # priorities: lower goes first


class PrioritySlots:
    """``size`` slots; a waiter of a lower priority number gets a freed slot before any of a higher
    one, waiters of one priority in arrival order. Belongs to the event loop it is used in."""

    def __init__(self, size: int):
        self._free = size
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())

    async def acquire(self, priority: int) -> None:
        if self._free and not any(self._waiting):
            self._free -= 1
            return
        granted = asyncio.get_running_loop().create_future()
        self._waiting[priority].append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # handed a slot in the instant it was cancelled: pass it on
            elif granted in self._waiting[priority]:  # release() drops cancelled waiters it meets
                self._waiting[priority].remove(granted)
            raise

    def release(self) -> None:
        for queue in self._waiting:
            while queue:
                granted = queue.popleft()
                if not granted.done():
                    granted.set_result(None)  # the slot goes straight to the waiter
                    return
        self._free += 1


class _HotPath:
    """The hot paths' slots and the thread limiter of the same size (so a unit holding a slot never
    waits for a thread)."""

    def __init__(self, size: int):
        self.slots = PrioritySlots(size)
        self.threads = CapacityLimiter(size)


# one per event loop (asyncio and anyio primitives belong to the loop they were made in; tests run several)
_hot_paths: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _HotPath] = weakref.WeakKeyDictionary()


def _hot_path() -> _HotPath:
    loop = asyncio.get_running_loop()
    hot = _hot_paths.get(loop)
    if hot is None:
        hot = _hot_paths[loop] = _HotPath(get_settings().api_hot_threads)
    return hot


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

    hot = _hot_path()
    await hot.slots.acquire(WRITE if write else READ)
    try:
        return await to_thread.run_sync(unit, limiter=hot.threads)
    finally:
        hot.slots.release()


def json_response(model: BaseModel, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    """The model as JSON, serialised once by pydantic (FastAPI would validate it again first)."""
    return Response(model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json")
