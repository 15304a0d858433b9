"""The hot paths' units run on at most ``api_hot_threads`` threads; the rest wait in the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

from app.core import threadpool
from app.settings import get_settings


def test_at_most_api_hot_threads_units_run_at_once():
    running, peak, lock = 0, 0, threading.Lock()

    def work(_db) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)  # no query: the session is never used, so no database is needed
        with lock:
            running -= 1
        return threading.current_thread().name

    async def many() -> list[str]:
        return await asyncio.gather(*(threadpool.in_session(work) for _ in range(20)))

    names = asyncio.run(many())
    limit = get_settings().api_hot_threads
    assert len(names) == 20 and peak == limit, (peak, limit)
