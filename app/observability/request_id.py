"""``X-Request-ID``: honoured when the caller sends a sane one, made up otherwise, bound for the
request's log lines and returned on the response. The same middleware times the request once for
both the access line and the HTTP metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability import context
from app.observability.metrics import observe_request

HEADER = b"x-request-id"
# Whatever a proxy or client sends is echoed into logs and headers: accept only a short token.
_SANE = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
access_log = logging.getLogger("unlearnd.access")


def _incoming(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == HEADER:
            text = value.decode("latin-1")
            return text if _SANE.match(text) else None
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/jobs/{job_id}``): bounded, unlike raw paths."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid  # for the 500 handler, outside this middleware
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (HEADER, rid.encode())]}
            await send(message)

        with context.bound(request_id=rid):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = route_template(scope)
                observe_request(scope["method"], route, status, seconds)
                access_log.info(
                    "%s %s %d",
                    scope["method"],
                    route,
                    status,
                    extra={
                        "http_method": scope["method"],
                        "route": route,
                        "path": scope["path"],  # never the query string: filters may name a subject
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                    },
                )
