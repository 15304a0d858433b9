"""Re-walking the hash chain, so an auditor can check the trail was not altered after it was written.

Each event must follow the previous one with no gap in ``seq``, carry the previous event's hash as
``prev_hash``, hash to its stored ``hash``, and agree with every signed head for its seq (stored, or
one the caller saved); a head past the chain's end means its tail was deleted. The walk reads keyset
batches (never the whole table) up to a seq fixed when it starts, and stops at the first break.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.audit import heads, repository
from app.audit.hashchain import GENESIS_HASH, event_hash
from app.audit.offline import BAD_HASH, BAD_LINK, MISSING, HeadCheck
from app.audit.schemas import ChainVerificationOut
from app.audit.tables import AuditEvent
from app.core.errors import Invalid

BATCH_SIZE = 1000


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
    heads: HeadCheck | None = None

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
            heads_checked=self.heads.checked if self.heads else 0,
            latest_head_seq=self.heads.latest_seq if self.heads else None,
        )


def verify_chain(
    db: Session,
    *,
    from_seq: int | None = None,
    to_seq: int | None = None,
    supplied_heads: Sequence[dict] = (),
    batch_size: int = BATCH_SIZE,
) -> ChainVerificationOut:
    """``supplied_heads``: signed head documents the caller kept (malformed ones are the caller's 422)."""
    check_seq_range(from_seq, to_seq)
    start = from_seq or 1
    walk = _Walk(from_seq=start)
    found = []
    # stored heads are read before the chain's end: a head signed meanwhile is never past it
    for read, item in [(heads.supplied_head, d) for d in supplied_heads] + [
        (heads.stored_head, row) for row in repository.heads(db, from_seq=start, to_seq=to_seq)
    ]:
        try:
            found.append(read(item))
        except ValueError as exc:  # a bad signature: nothing this head says can be trusted
            return walk.report(_head_seq(item), str(exc))
    walk.heads = HeadCheck([h for h in found if h.seq >= start and (to_seq is None or h.seq <= to_seq)])
    end = chain_end(db, to_seq)
    if end is None or start > end:  # nothing recorded in this range: only a head can contradict that
        past = walk.heads.beyond(end)
        return walk.report(*past) if past else walk.report()
    prev_hash = GENESIS_HASH if start == 1 else repository.hash_at(db, start - 1)
    if prev_hash is None:  # the event the range must link to is gone
        return walk.report(start - 1, MISSING.format(start - 1))
    expected = start
    for event in iter_chain(db, after_seq=start - 1, up_to_seq=end, batch_size=batch_size):
        broken = _link_problem(event, expected, prev_hash)
        if broken is None and (differs := walk.heads.problem_at(event.seq, event.hash)) is not None:
            broken = event.seq, differs
        if broken is not None:
            return walk.report(*broken)
        walk.passed(event)
        prev_hash, expected = event.hash, expected + 1
    if expected <= end:  # the rows stopped short of the end: the range's tail is missing
        return walk.report(expected, MISSING.format(expected))
    past = walk.heads.beyond(end)
    return walk.report(*past) if past else walk.report()


def _head_seq(item) -> int | None:
    head = item.get("head") if isinstance(item, dict) else None
    seq = head.get("seq") if isinstance(head, dict) else getattr(item, "seq", None)
    return seq if type(seq) is int else None


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
