"""The sequencer: moves committed events from ``audit_inbox`` into the hash chain, one chainer at a
time, so writers never wait for each other on the chain (why, and who chains: docs/decisions/audit-chain.md)."""

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
        self.poll_s: float | None = None  # also look at the inbox this often when nothing woke it
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
            woken = self._wanted.wait(timeout=self.poll_s)
            if woken:
                time.sleep(GATHER_S)
            self._wanted.clear()
            try:
                # a poll costs one query when there is nothing to chain; a wake after a commit chains
                if woken or _inbox_has_events():
                    chain_pending(wait=False, until_empty=False)
            except Exception:  # the database may be away: the next commit, a reader or the reconciler chains
                log.exception("chaining audit events failed")
                time.sleep(1.0)


_background = _Background()


def wake() -> None:
    """Have this process's sequencer thread chain soon (after a commit that wrote events)."""
    _background.wake()


def chain_in_background(enabled: bool) -> None:
    """Whether :func:`wake` chains in this process (``UNLEARND_API_CHAINS_AUDIT`` for the API; off by
    default: a worker's periodic pass chains the API's events, docs/decisions/audit-chain.md)."""
    _background.enabled = enabled


def chain_periodically(poll_s: float) -> None:
    """This process chains after its own commits and, every ``poll_s``, whatever another process
    (the API) left in the inbox: workers call it, so no event waits unchained for longer."""
    _background.enabled = True
    _background.poll_s = poll_s
    wake()
