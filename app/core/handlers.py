"""Every error leaves the API as RFC 9457 problem+json."""

from __future__ import annotations

import json
import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import PROBLEM_CONTENT_TYPE, ProblemError, problem_body, pydantic_errors
from app.core.methods import allow_header, allowed_methods
from app.observability import context as log_context
from app.storage import ArtifactMissingError

log = logging.getLogger(__name__)

_HTTP_SLUGS = {404: "route-not-found", 405: "method-not-allowed", 413: "payload-too-large"}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_CONTENT_TYPE

    def render(self, content) -> bytes:
        # ASCII escapes: a problem may quote the bad input, and an unpaired surrogate in it (a JSON
        # "\ud800") cannot be encoded as UTF-8, but as an escape it is still valid JSON.
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()


def _problem(request: Request, body: dict, status: int, headers: dict | None = None) -> JSONResponse:
    body.setdefault("instance", request.url.path)
    return ProblemResponse(body, status_code=status, headers=headers)


def _unparseable_body(exc: StarletteHTTPException) -> dict:
    """FastAPI and Starlette answer 400 when a body cannot be parsed at all (not JSON, not UTF-8,
    nested too deeply, a number too long, a broken multipart body): that is bad input, a 422."""
    cause = exc.__cause__
    if isinstance(cause, StarletteHTTPException):  # e.g. Starlette's multipart parser
        exc, cause = cause, None
    if isinstance(cause, RecursionError):
        why = "the JSON is nested too deeply"
    elif isinstance(cause, UnicodeDecodeError):
        why = f"the body is not valid UTF-8 (byte {cause.start})"
    elif cause is not None:
        why = f"{type(cause).__name__}: {cause}"[:300]
    else:
        why = str(exc.detail)
    detail = f"the request body could not be parsed: {why}"
    error = {"loc": ["body"], "field": "body", "message": detail, "type": "body_unparseable"}
    return problem_body(422, "validation-error", "Invalid request", detail, errors=[error])


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem_error(request: Request, exc: ProblemError):
        return _problem(request, exc.to_dict(), exc.status, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = pydantic_errors(list(exc.errors()))
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return _problem(request, problem_body(422, "validation-error", "Invalid request", detail, errors=errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:
            return _problem(request, _unparseable_body(exc), 422)
        slug = _HTTP_SLUGS.get(exc.status_code, "not-found" if exc.status_code == 404 else "conflict")
        if exc.status_code not in _HTTP_SLUGS and exc.status_code >= 500:
            slug = "internal-error"
        title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(exc.status_code, "Error")
        body = problem_body(exc.status_code, slug, title, str(exc.detail) if exc.detail else None)
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:  # Starlette's Allow names only the first route that matched the path
            allowed = allowed_methods(request.app.router.routes, request.url.path)
            headers = {**(headers or {}), **({"Allow": allow_header(allowed)} if allowed else {})}
        return _problem(request, body, exc.status_code, headers)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        log.warning("database unavailable: %s", exc.orig)
        body = problem_body(
            503, "service-unavailable", "Database unavailable", "the database could not be reached; retry shortly"
        )
        return _problem(request, body, 503, {"Retry-After": "5"})

    @app.exception_handler(DataError)
    async def _unstorable(request: Request, exc: DataError):
        # A safety net: request values are validated before they reach SQL (NUL characters, integer
        # ranges); one that slipped through is still the client's bad input, not a server error.
        log.warning("database refused a request value: %s", exc.orig)
        detail = "a value in the request cannot be stored or compared by the database (out of range or unsupported)"
        return _problem(request, problem_body(422, "unstorable-value", "Invalid value", detail), 422)

    @app.exception_handler(ArtifactMissingError)
    async def _artifact_missing(request: Request, exc: ArtifactMissingError):
        log.error("artifact missing: %s", exc)
        return _problem(request, problem_body(500, "artifact-missing", "Stored file missing", str(exc)), 500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        # the request id (the client's X-Request-ID if it sent one) that the request's log lines
        # carry; kept on the scope, since this handler runs outside the middleware that binds it
        trace_id = getattr(request.state, "request_id", None) or uuid.uuid4().hex
        with log_context.bound(request_id=trace_id):
            log.exception("unhandled error (trace_id=%s)", trace_id)
        body = problem_body(
            500, "internal-error", "Internal server error", "an unexpected error occurred", trace_id=trace_id
        )
        return _problem(request, body, 500, {"X-Request-ID": trace_id})
