"""Refuse request bodies over the configured size with a 413 problem (before reading them, when the
client sends Content-Length; as soon as the limit is crossed, when it streams)."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_CONTENT_TYPE, problem_body


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request bodies are limited to {self.max_bytes} bytes (UNLEARND_MAX_UPLOAD_BYTES)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            body = problem_body(
                413,
                "payload-too-large",
                "Payload too large",
                self._detail(),
                instance=scope["path"],
                limit_bytes=self.max_bytes,
            )
            await JSONResponse(body, status_code=413, media_type=PROBLEM_CONTENT_TYPE)(scope, receive, send)
            return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:  # the problem handler renders this as problem+json
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)
