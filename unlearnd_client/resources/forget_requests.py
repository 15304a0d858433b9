from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from unlearnd_client.schemas import ForgetRequest
from unlearnd_client.transport import Transport


def new_key() -> str:
    return uuid.uuid4().hex


class ForgetRequests:
    def __init__(self, transport: Transport):
        self._t = transport

    def submit(
        self,
        model_id: str,
        *,
        sample_ids: list[str] | None = None,
        class_labels: list[int] | None = None,
        method: str = "auto",
        params: dict[str, Any] | None = None,
        request_id: str | None = None,
        regulation: str | None = None,
        subject: str | None = None,
        verification: dict[str, Any] | None = None,
        on_verification_failure: str | None = None,
        idempotency_key: str | None = None,
    ) -> ForgetRequest:
        """Queue a forget request (202). One Idempotency-Key (``idempotency_key``, else a new one) is
        made for this call and sent with every retry of it, so a retry after a lost answer gets the
        original answer (``replayed``) instead of a second request."""
        if (sample_ids is None) == (class_labels is None):
            raise ValueError("give exactly one of sample_ids or class_labels")
        key = idempotency_key or new_key()
        scope = {"sample_ids": list(sample_ids)} if sample_ids is not None else {"class_labels": list(class_labels)}
        body: dict[str, Any] = {
            "request_id": request_id or f"client-{key}",
            "model_id": model_id,
            "scope": scope,
            "method": method,
        }
        optional = {
            "params": params,
            "regulation": regulation,
            "subject": subject,
            "verification": verification,
            "on_verification_failure": on_verification_failure,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        response = self._t.send("POST", "/v1/forget-requests", json=body, headers={"Idempotency-Key": key})
        submitted = ForgetRequest.model_validate(response.json())
        submitted.idempotency_key = key
        submitted.replayed = response.headers.get("Idempotent-Replayed") == "true"
        return submitted

    def get(self, forget_request_id: str) -> ForgetRequest:
        return ForgetRequest.model_validate(self._t.json("GET", f"/v1/forget-requests/{forget_request_id}"))

    def list(
        self,
        *,
        model_id: str | None = None,
        state: str | None = None,
        overdue: bool | None = None,
        due_before: str | None = None,
        page_size: int = 100,
    ) -> Iterator[ForgetRequest]:
        filters = {"model_id": model_id, "state": state, "overdue": overdue or None, "due_before": due_before}
        items = self._t.pages("/v1/forget-requests", filters, page_size=page_size)
        return (ForgetRequest.model_validate(fr) for fr in items)

    def cancel(self, forget_request_id: str) -> ForgetRequest:
        return ForgetRequest.model_validate(self._t.json("POST", f"/v1/forget-requests/{forget_request_id}/cancel"))
