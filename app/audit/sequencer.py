"""The sequencer: moves committed events from ``audit_inbox`` into the hash chain, one chainer at a time.

Why an inbox: appending to one chain needs one lock, and a writer that appended in its own
transaction held that lock until it committed, so every write of the service (each POST, each job
step) queued behind every other: under 50 clients most of a POST's time was that queue. Now a write
commits its events to the inbox without any lock, and chaining happens after, in short transactions
of their own that chain whatever is waiting, many events at once.

Who chains: after a commit that wrote events, a thread of the same process (:func:`wake`) in the
workers (the API leaves its events to them: :func:`chain_in_background`), which only *tries* the
lock: if another chainer holds it, that one looks at the inbox again after it lets
go (see :func:`chain_pending`), so no event is left behind. Anything that reads the chain first
waits for the lock and chains what is there (:func:`flush`), so a reader always sees every event
committed before its request. The reconciler chains too, in case a process died between a commit
and its chaining.

Events keep the time they were committed at; along the chain a time is never earlier than the one
before it (an event committed a moment before the previous one's transaction is stamped with that
one's time), so timestamps never go backwards along the chain.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from app.audit import repository
from app.audit.hashchain import GENESIS_HASH, event_hash
from app.audit.tables import EVENT_FIELDS, AuditEvent, AuditInboxEvent
from app.db import commit, new_session

log = logging.getLogger(__name__)
BATCH = 1000  # events chained per transaction
# A woken sequencer waits this long first, so one chaining serves the commits of that while (under
# load a chaining per commit cost the API a tenth of its CPU); readers do not wait for it (flush).
GATHER_S = 0.2


def flush() -> int:
    """Chain every event committed so far (waiting for the lock if another chainer holds it); the
    number chained. Call before reading the chain."""
    return chain_pending(wait=True)


def chain_pending(*, wait: bool, until_empty: bool = True) -> int:
    """Chain what the inbox holds, in batches. ``wait=False`` gives up at once when another chainer
    holds the lock: that chainer checks the inbox again after releasing it, so it will take these
    events too (each chainer, after each release, looks before it stops). ``until_empty=False``
    (the background thread): events that arrived while chaining are left for the thread's next
    round, after another gather, instead of chaining at once (under a steady stream of commits the
    thread otherwise chained back to back, a few events at a time)."""
    chained = 0
    while True:
        db = new_session()
        try:
            if not repository.lock_chain(db, wait=wait):
                return chained
            moved = _chain_batch(db)
            commit(db)
        finally:
            db.close()
        chained += moved
        # Looked at after the lock is released: a writer whose try failed while it was held had
        # committed its events before trying, so they are visible here.
        if moved < BATCH and not _inbox_has_events():
            return chained
        if not until_empty:
            wake()  # the next round takes them
            return chained


def _inbox_has_events() -> bool:
    db = new_session()
    try:
        return repository.inbox_has_events(db)
    finally:
        db.close()


def _chain_batch(db) -> int:
    waiting = repository.inbox_batch(db, BATCH)
    if not waiting:
        return 0
    last = repository.last_link(db)
    seq, prev_hash, prev_at = (1, GENESIS_HASH, None) if last is None else (last[0] + 1, last[1], last[2])
    rows = []
    for item in waiting:
        occurred_at = item.occurred_at if prev_at is None else max(item.occurred_at, prev_at)
        row = AuditEvent(seq=seq, occurred_at=occurred_at, prev_hash=prev_hash, **_fields(item))
        row.hash = prev_hash = event_hash(prev_hash, row)
        rows.append(row)
        seq, prev_at = seq + 1, occurred_at
    repository.add_all(db, rows)
    repository.delete_from_inbox(db, [item.id for item in waiting])
    return len(rows)


def _fields(item: AuditInboxEvent) -> dict:
    return {name: getattr(item, name) for name in EVENT_FIELDS}


class _Background:
    """One daemon thread per process that chains after commits; started on first use, and again in
    a forked child (a fork copies no threads)."""

    def __init__(self) -> None:
        self.enabled = True
        self._wanted = threading.Event()
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def wake(self) -> None:
        if not self.enabled:
            return
        if self._pid != os.getpid():
            with self._start_lock:
                if self._pid != os.getpid():
                    self._wanted = threading.Event()
                    threading.Thread(target=self._run, name="audit-sequencer", daemon=True).start()
                    self._pid = os.getpid()
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            time.sleep(GATHER_S)
            self._wanted.clear()
            try:
                chain_pending(wait=False, until_empty=False)
            except Exception:  # the database may be away: the next commit, a reader or the reconciler chains
                log.exception("chaining audit events failed")
                time.sleep(1.0)


_background = _Background()


def wake() -> None:
    """Have this process's sequencer thread chain soon (after a commit that wrote events)."""
    _background.wake()


def chain_in_background(enabled: bool) -> None:
    """Whether :func:`wake` chains in this process. The API turns it off (``UNLEARND_API_CHAINS_AUDIT``):
    under 50 clients on 2 cores its sequencer thread cost the API 3.0-4.1 ms of CPU per request
    against 2.7-2.8 without, and POST p99 was 48-67 ms against 33-38 (three interleaved 30 s runs
    each, not committed; the full service benchmark run after the change, benchmarks/results/service.md,
    did not show the p99 lower than the run before it, within the machine's spread). The workers
    chain the API's events after their next commit instead, and readers never wait for that
    (:func:`flush`)."""
    _background.enabled = enabled
