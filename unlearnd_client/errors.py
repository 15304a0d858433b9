"""What the client raises. An API error carries the RFC 9457 problem fields the service sent, so a
caller can branch on ``type`` (stable) rather than on the wording of ``detail``."""

from __future__ import annotations

from typing import Any

import httpx

_PROBLEM_FIELDS = ("type", "title", "status", "detail", "instance")


class UnlearndError(Exception):
    """Base of every error the client raises."""


class ApiError(UnlearndError):
    """The API answered with an error status (4xx/5xx), usually as problem+json."""

    def __init__(
        self,
        status: int,
        type: str = "about:blank",
        title: str = "",
        detail: str | None = None,
        instance: str | None = None,
        extensions: dict[str, Any] | None = None,
    ):
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.instance = instance
        self.extensions = extensions or {}  # the problem's other members (errors, unknown_sample_ids, ...)
        super().__init__(f"{status} {title or type}" + (f": {detail}" if detail else ""))

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        """Reads a problem+json body; anything else (a proxy's HTML page) keeps the status and reason."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip()[:300] if response.text else None
            return cls(response.status_code, title=response.reason_phrase, detail=text or None)
        return cls(
            status=body.get("status") if isinstance(body.get("status"), int) else response.status_code,
            type=str(body.get("type") or "about:blank"),
            title=str(body.get("title") or response.reason_phrase),
            detail=body.get("detail"),
            instance=body.get("instance"),
            extensions={k: v for k, v in body.items() if k not in _PROBLEM_FIELDS},
        )

    def to_dict(self) -> dict[str, Any]:
        body = {"type": self.type, "title": self.title, "status": self.status}
        body.update({k: v for k, v in (("detail", self.detail), ("instance", self.instance)) if v is not None})
        return {**body, **self.extensions}


class ServiceUnreachable(UnlearndError):
    """No answer from the API, after every retry (connection refused, reset, timed out)."""


class ChecksumMismatch(UnlearndError):
    """A downloaded checkpoint's sha256 differs from what the API reports for its version."""

    def __init__(self, expected: str, actual: str):
        self.expected = expected
        self.actual = actual
        super().__init__(f"sha256 mismatch: the API reports {expected}, the downloaded file is {actual}")


class WaitTimeout(UnlearndError):
    """:meth:`Client.wait` gave up before the request reached a final state; ``last`` is what it saw."""

    def __init__(self, request_id: str, last: Any):
        self.request_id = request_id
        self.last = last
        state = getattr(last, "state", None)
        super().__init__(f"forget request {request_id} is still {state or 'unknown'}")
