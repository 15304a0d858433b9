"""HTTP methods per path: a wrong method on an existing path is a 405 whose ``Allow`` lists every
method the path takes (RFC 9110 15.5.6), and ``OPTIONS`` answers with that list.

A static path wins over a parameter route that would also match it: ``GET /v1/models/upload`` is a
405 (only POST there), not a 422 from ``GET /v1/models/{model_id}``."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import routing
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.errors import PROBLEM_CONTENT_TYPE, problem_body

# FastAPI >= 0.160 keeps included routers nested; this walks them (older ones list every route flat)
_iter_routes = getattr(routing, "iter_route_contexts", iter)


def _http_routes(routes: Sequence[BaseRoute]) -> list[Any]:
    """Every HTTP route with a method list (not mounts or websockets), included routers' too."""
    return [r for r in _iter_routes(routes) if getattr(r, "methods", None) and hasattr(r, "path_regex")]


def _methods(routes: Sequence[Any]) -> frozenset[str]:
    return frozenset({"OPTIONS"}.union(*(r.methods for r in routes)))


def allowed_methods(routes: Sequence[BaseRoute], path: str) -> frozenset[str] | None:
    """What ``path`` takes: its static routes' methods if it has any, else those of every route
    whose pattern matches it; None when no route matches."""
    api = _http_routes(routes)
    matching = [r for r in api if not r.param_convertors and r.path == path]
    matching = matching or [r for r in api if r.path_regex.match(path)]
    return _methods(matching) if matching else None


def allow_header(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods))


class AllowedMethodsMiddleware:
    """Answers OPTIONS, and a wrong method on a static path, before routing; the router's own 405
    (parameter paths) gets its full ``Allow`` in app.core.handlers."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]):
        self.app = app
        self.routes = routes  # the app's live list: filled by include_router before the first request
        self._static: dict[str, frozenset[str]] | None = None

    def _static_paths(self) -> dict[str, frozenset[str]]:
        if self._static is None:
            paths: dict[str, list[Any]] = {}
            for r in _http_routes(self.routes):
                if not r.param_convertors:
                    paths.setdefault(r.path, []).append(r)
            self._static = {p: _methods(rs) for p, rs in paths.items()}
        return self._static

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        method, path = scope["method"], scope["path"]
        allowed = self._static_paths().get(path)
        if allowed is None and method == "OPTIONS":
            allowed = allowed_methods(self.routes, path)
        if allowed is None or (method in allowed and method != "OPTIONS"):
            return await self.app(scope, receive, send)
        allow = allow_header(allowed)
        if method == "OPTIONS":
            headers = [(b"allow", allow.encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": headers})
            return await send({"type": "http.response.body", "body": b""})
        detail = f"{path} does not take {method}; it takes {allow}"
        problem = problem_body(405, "method-not-allowed", "Method not allowed", detail, path)
        body = json.dumps(problem, separators=(",", ":")).encode()
        headers = [
            (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"allow", allow.encode()),
        ]
        await send({"type": "http.response.start", "status": 405, "headers": headers})
        await send({"type": "http.response.body", "body": body})
