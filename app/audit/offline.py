"""Signed chain heads and the offline check of an exported chain: no web framework, no database.

A head is the service's signed statement that event ``seq`` had hash ``hash`` at ``signed_at``.
The API's verify and ``unlearnd verify-audit-export`` both use :class:`HeadCheck`, so they give
the same answer for the same chain. An auditor needs this module, app.audit.hashchain,
app.certificates.offline, app.core.hashing and the ``cryptography`` package.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.audit.hashchain import GENESIS_HASH, body_hash
from app.certificates.offline import check_signature

HEAD_TYPE = "unlearnd.audit-chain-head"
HEAD_LINE_KEY = "chain_head"  # a JSON Lines export line holding a head rather than an event
REDACTED_KEY = "redacted"  # true on another tenant's event: a link (seq, prev_hash, hash) without content
LINK_KEYS = {"seq", "prev_hash", "hash", REDACTED_KEY}

MISSING = "seq {} is missing"
BAD_LINK = "prev_hash does not match the previous event's hash"
BAD_HASH = "hash does not match the event's content"
NOT_ONLY_A_LINK = "a redacted event may hold only seq, prev_hash and hash"
REWRITTEN = (
    "hash differs from the {origin} chain head signed at {signed_at} for seq {seq}: the event, or one before "
    "it, was changed after that head was signed"
)
TRUNCATED = (
    "the chain ends at {end}, but the {origin} chain head signed at {signed_at} vouches for seq {seq}: "
    "events were deleted"
)


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str
    signed_at: str
    origin: str  # "stored", "supplied" or "export": said in every reason about this head


def read_head(document: Any, public_key: Any, *, origin: str) -> Head:
    """A signed head document ``{"head": {...}, "signature": {...}}`` checked against the key;
    ValueError with the reason when it is malformed or its signature does not verify."""
    head = document.get("head") if isinstance(document, dict) else None
    signature = document.get("signature") if isinstance(document, dict) else None
    if not isinstance(head, dict) or not isinstance(signature, dict):
        raise ValueError(f"{origin} chain head: expected 'head' and 'signature' objects")
    seq, hash_, signed_at = head.get("seq"), head.get("hash"), head.get("signed_at")
    if head.get("type") != HEAD_TYPE or type(seq) is not int or seq < 1:
        raise ValueError(f"{origin} chain head: not a chain head (type {head.get('type')!r}, seq {seq!r})")
    if not isinstance(hash_, str) or len(hash_) != 64 or not isinstance(signed_at, str):
        raise ValueError(f"{origin} chain head for seq {seq}: malformed hash or signed_at")
    try:
        check_signature(head, signature, public_key, what="chain head")
    except ValueError as exc:
        raise ValueError(f"{origin} chain head for seq {seq}: {exc}") from None
    return Head(seq=seq, hash=hash_, signed_at=signed_at, origin=origin)


@dataclass
class HeadCheck:
    """The heads a walk must agree with: the event at each head's seq must exist with that hash."""

    heads: list[Head]
    checked: int = 0
    latest_seq: int | None = None  # the last seq a matching head vouches for
    _by_seq: dict[int, list[Head]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for head in self.heads:
            self._by_seq.setdefault(head.seq, []).append(head)

    def problem_at(self, seq: int, hash_: str) -> str | None:
        """Called with each event the walk found intact, in seq order."""
        for head in self._by_seq.get(seq, []):
            if head.hash != hash_:
                return REWRITTEN.format(origin=head.origin, signed_at=head.signed_at, seq=seq)
            self.checked += 1
            self.latest_seq = seq
        return None

    def beyond(self, end: int | None) -> tuple[int, str] | None:
        """After the walk: a head past the last event means the tail was deleted (the lowest such head)."""
        past = [h for h in self.heads if end is None or h.seq > end]
        if not past:
            return None
        head = min(past, key=lambda h: h.seq)
        where = "seq 0 (no event)" if end is None else f"seq {end}"
        reason = TRUNCATED.format(end=where, origin=head.origin, signed_at=head.signed_at, seq=head.seq)
        return (1 if end is None else end + 1), reason


@dataclass(frozen=True)
class ExportVerification:
    ok: bool
    reason: str
    checked: int = 0
    first_broken_seq: int | None = None
    last_seq: int | None = None
    heads_checked: int = 0
    latest_head_seq: int | None = None
    linked: int = 0  # of ``checked``: other tenants' events, checked as links only (no content to hash)


def verify_export_lines(lines: Iterable[str], public_key: Any, extra_heads: Iterable[Any] = ()) -> ExportVerification:
    """Re-walk a JSON Lines export (``GET /v1/audit-events/export?format=jsonl``, no filters other
    than from_seq/to_seq) and check it against its heads and ``extra_heads`` (saved earlier).

    A redacted record (another tenant's event) has no content to recompute its hash from: it is
    checked as a link (its prev_hash, the next event's prev_hash, and any head at its seq)."""
    events: list[dict[str, Any]] = []
    head_docs: list[tuple[str, Any]] = [("supplied", doc) for doc in extra_heads]
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return ExportVerification(False, f"line {number} is not JSON")
        if not isinstance(record, dict):
            return ExportVerification(False, f"line {number} is not a JSON object")
        if HEAD_LINE_KEY in record:
            head_docs.append(("export", record[HEAD_LINE_KEY]))
        else:
            events.append(record)
    try:
        heads = [read_head(doc, public_key, origin=origin) for origin, doc in head_docs]
    except ValueError as exc:
        return ExportVerification(False, str(exc))
    first = events[0].get("seq") if events else None
    if events and type(first) is not int:
        return ExportVerification(False, "the first event has no integer seq")
    check = HeadCheck([h for h in heads if first is None or h.seq >= first])
    checked, linked, prev_hash, expected = 0, 0, None, first
    for record in events:
        broken = _event_problem(record, expected, prev_hash)
        if broken is None:
            broken = check.problem_at(record["seq"], record["hash"])
        if broken is not None:
            last = expected - 1 if checked else None
            return ExportVerification(False, broken, checked, expected, last, linked=linked)
        checked, prev_hash, expected = checked + 1, record["hash"], expected + 1
        linked += _is_link(record)
    end = None if first is None else expected - 1
    past = check.beyond(end)
    if past is not None:
        return ExportVerification(False, past[1], checked, past[0], end, check.checked, check.latest_seq, linked)
    reason = (
        f"{checked} events link ({checked - linked} recomputed, {linked} other tenants' only as links); "
        f"{check.checked} signed heads match"
    )
    if end is not None and check.latest_seq != end:
        reason += f"; events after seq {check.latest_seq or 0} are covered by no signed head yet"
    return ExportVerification(True, reason, checked, None, end, check.checked, check.latest_seq, linked)


def _is_link(record: dict[str, Any]) -> bool:
    return record.get(REDACTED_KEY) is True


def _event_problem(record: dict[str, Any], expected: int, prev_hash: str | None) -> str | None:
    seq, stored_prev, stored_hash = record.get("seq"), record.get("prev_hash"), record.get("hash")
    if type(seq) is not int or not isinstance(stored_prev, str) or not isinstance(stored_hash, str):
        return f"the event after seq {expected - 1} has no integer seq, prev_hash or hash"
    if seq != expected:  # lines come in seq order: a larger seq means one was removed
        return MISSING.format(expected)
    if prev_hash is None and seq == 1 and stored_prev != GENESIS_HASH:
        return BAD_LINK
    if prev_hash is not None and stored_prev != prev_hash:
        return BAD_LINK
    if _is_link(record):  # its hash is vouched for by the next event's prev_hash and the heads
        return None if set(record) == LINK_KEYS else NOT_ONLY_A_LINK
    body = {k: v for k, v in record.items() if k not in ("prev_hash", "hash")}
    if body_hash(stored_prev, body) != stored_hash:
        return BAD_HASH
    return None


def verify_export_file(path: str, public_key: str, head_paths: Iterable[str] = ()) -> ExportVerification:
    """The CLI's input: an export file, a PEM file or base64url key, and signed head files."""
    key_path = Path(public_key)
    try:
        key: str | bytes = key_path.read_bytes() if key_path.is_file() else public_key
        extra = [json.loads(Path(p).read_text(encoding="utf-8")) for p in head_paths]
        with open(path, encoding="utf-8") as lines:
            return verify_export_lines(lines, key, extra)
    except (OSError, ValueError) as exc:
        return ExportVerification(False, f"unreadable input: {exc}")
