from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from unlearnd_client.offline import ExportVerification, verify_export_lines
from unlearnd_client.schemas import AuditEvent, ChainVerification
from unlearnd_client.transport import Transport

ExportFormat = Literal["jsonl", "csv"]


class Audit:
    def __init__(self, transport: Transport, public_keys: Callable[[], list[dict[str, Any]]]):
        self._t = transport
        self._keys = public_keys  # GET /v1/keys, for verify_export without a key

    def search(
        self,
        *,
        model_id: str | None = None,
        forget_request_id: str | None = None,
        job_id: str | None = None,
        action: str | None = None,
        since: str | None = None,
        until: str | None = None,
        page_size: int = 100,
    ) -> Iterator[AuditEvent]:
        """Matching events, oldest first, page after page as they are consumed."""
        filters = {
            "model_id": model_id,
            "forget_request_id": forget_request_id,
            "job_id": job_id,
            "action": action,
            "since": since,
            "until": until,
        }
        return (AuditEvent.model_validate(e) for e in self._t.pages("/v1/audit-events", filters, page_size))

    def export_lines(
        self,
        *,
        format: ExportFormat = "jsonl",
        from_seq: int | None = None,
        to_seq: int | None = None,
        **filters: str | None,
    ) -> Iterator[str]:
        """The export streamed line by line. Without filters other than from_seq/to_seq it is the
        whole chain (other tenants' events as links), which :meth:`verify_export` can check."""
        params = {"format": format, "from_seq": from_seq, "to_seq": to_seq, **filters}
        with self._t.stream("GET", "/v1/audit-events/export", params=params) as response:
            yield from self._t.lines(response)

    def export(self, path: str | Path, **options: Any) -> int:
        """Write the export to ``path``; returns the number of lines."""
        count = 0
        with Path(path).open("w", encoding="utf-8") as out:
            for line in self.export_lines(**options):
                out.write(line + "\n")
                count += 1
        return count

    def verify(
        self, *, from_seq: int | None = None, to_seq: int | None = None, head: dict | None = None
    ) -> ChainVerification:
        """The server re-walks its chain (and checks it against ``head``, a signed head you kept)."""
        params = {"from_seq": from_seq, "to_seq": to_seq, "head": json.dumps(head) if head else None}
        return ChainVerification.model_validate(self._t.json("GET", "/v1/audit-events/verify", params=params))

    def heads(self, page_size: int = 100) -> Iterator[dict[str, Any]]:
        return self._t.pages("/v1/audit/heads", page_size=page_size)

    def verify_export(
        self,
        lines: Iterable[str] | None = None,
        *,
        public_key: str | bytes | None = None,
        heads: Iterable[dict[str, Any]] = (),
        from_seq: int | None = None,
        to_seq: int | None = None,
    ) -> ExportVerification:
        """Re-walk an export here (``lines``, else a fresh one from the API) against its signed heads
        and ``heads`` you kept. Without ``public_key``, the API's published key is used."""
        if public_key is None:
            keys = self._keys()
            if not keys:
                return ExportVerification(False, "GET /v1/keys lists no public key")
            public_key = keys[0]["public_key"]
        if lines is None:
            lines = self.export_lines(from_seq=from_seq, to_seq=to_seq)
        return verify_export_lines(lines, public_key, list(heads))
