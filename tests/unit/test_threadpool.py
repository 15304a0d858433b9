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


def test_waiting_writes_take_a_freed_slot_before_reads_and_each_kind_keeps_arrival_order():
    order: list[str] = []

    async def scenario() -> None:
        slots = threadpool.PrioritySlots(1)
        await slots.acquire(threadpool.READ)  # the one slot is busy

        async def wait(name: str, priority: int) -> None:
            await slots.acquire(priority)
            order.append(name)
            slots.release()

        waiters = []
        for name, priority in [("read1", threadpool.READ), ("write1", threadpool.WRITE), ("read2", threadpool.READ)]:
            waiters.append(asyncio.create_task(wait(name, priority)))
            await asyncio.sleep(0)  # queued in this order
        waiters.append(asyncio.create_task(wait("write2", threadpool.WRITE)))
        await asyncio.sleep(0)
        slots.release()
        await asyncio.gather(*waiters)

    asyncio.run(scenario())
    assert order == ["write1", "write2", "read1", "read2"]


def test_a_cancelled_waiter_loses_no_slot():
    async def scenario() -> bool:
        slots = threadpool.PrioritySlots(1)
        await slots.acquire(threadpool.WRITE)
        gone = asyncio.create_task(slots.acquire(threadpool.READ))
        await asyncio.sleep(0)
        slots.release()  # handed to the waiter ...
        gone.cancel()  # ... which is cancelled before it runs: the slot must come back
        await asyncio.gather(gone, return_exceptions=True)
        await asyncio.wait_for(slots.acquire(threadpool.READ), timeout=1)
        queued = asyncio.create_task(slots.acquire(threadpool.READ))
        await asyncio.sleep(0)
        queued.cancel()  # cancelled while queued: nothing to hand back, and no ghost waiter
        await asyncio.gather(queued, return_exceptions=True)
        slots.release()
        await asyncio.wait_for(slots.acquire(threadpool.WRITE), timeout=1)
        return True

    assert asyncio.run(scenario())
