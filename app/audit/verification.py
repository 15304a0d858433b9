"""Re-walking the hash chain, so an auditor can check the trail was not altered after it was written.

Each event must follow the previous one with no gap in ``seq``, carry the previous event's hash as
``prev_hash``, and hash to its stored ``hash``. The walk reads keyset batches (never the whole
table) up to a seq fixed when it starts, and stops at the first break.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.audit import repository
from app.audit.hashchain import GENESIS_HASH, event_hash
from app.audit.schemas import ChainVerificationOut
from app.audit.tables import AuditEvent
from app.core.errors import Invalid

BATCH_SIZE = 1000

MISSING = "seq {} is missing"
BAD_LINK = "prev_hash does not match the previous event's hash"
BAD_HASH = "hash does not match the event's content"


def check_seq_range(from_seq: int | None, to_seq: int | None) -> None:
    if from_seq is not None and to_seq is not None and from_seq > to_seq:
        raise Invalid(f"from_seq ({from_seq}) is after to_seq ({to_seq}).", title="Invalid seq range")


def chain_end(db: Session, to_seq: int | None) -> int | None:
    """The last seq a walk covers, fixed before it starts: events appended meanwhile are not its
    business, and with an append-only table everything up to it reads the same on every batch."""
    last = repository.last_link(db)
    if last is None:
        return None
    return last[0] if to_seq is None else min(to_seq, last[0])


@dataclass
class _Walk:
    from_seq: int
    checked: int = 0
    to_seq: int | None = None
    last_hash: str | None = None

    def passed(self, event: AuditEvent) -> None:
        self.checked += 1
        self.to_seq = event.seq
        self.last_hash = event.hash

    def report(self, broken_seq: int | None = None, reason: str | None = None) -> ChainVerificationOut:
        return ChainVerificationOut(
            ok=broken_seq is None,
            checked=self.checked,
            from_seq=self.from_seq,
            to_seq=self.to_seq,
            first_broken_seq=broken_seq,
            reason=reason,
            last_hash=self.last_hash,
        )


def verify_chain(
    db: Session, *, from_seq: int | None = None, to_seq: int | None = None, batch_size: int = BATCH_SIZE
) -> ChainVerificationOut:
    check_seq_range(from_seq, to_seq)
    start = from_seq or 1
    walk = _Walk(from_seq=start)
    end = chain_end(db, to_seq)
    if end is None or start > end:  # nothing recorded in this range: nothing to contradict
        return walk.report()
    prev_hash = GENESIS_HASH if start == 1 else repository.hash_at(db, start - 1)
    if prev_hash is None:  # the event the range must link to is gone
        return walk.report(start - 1, MISSING.format(start - 1))
    expected = start
    for event in iter_chain(db, after_seq=start - 1, up_to_seq=end, batch_size=batch_size):
        broken = _link_problem(event, expected, prev_hash)
        if broken is not None:
            return walk.report(*broken)
        walk.passed(event)
        prev_hash, expected = event.hash, expected + 1
    if expected <= end:  # the rows stopped short of the end: the range's tail is missing
        return walk.report(expected, MISSING.format(expected))
    return walk.report()


def _link_problem(event: AuditEvent, expected_seq: int, prev_hash: str) -> tuple[int, str] | None:
    if event.seq != expected_seq:  # rows come in seq order, so a larger seq means one was removed
        return expected_seq, MISSING.format(expected_seq)
    if event.prev_hash != prev_hash:
        return event.seq, BAD_LINK
    if event_hash(event.prev_hash, event) != event.hash:
        return event.seq, BAD_HASH
    return None


def iter_chain(db: Session, *, after_seq: int, up_to_seq: int, batch_size: int) -> Iterator[AuditEvent]:
    while after_seq < up_to_seq:
        batch = repository.chain_batch(db, after_seq=after_seq, up_to_seq=up_to_seq, limit=batch_size)
        repository.end_read(db)
        if not batch:
            return
        yield from batch
        after_seq = batch[-1].seq
