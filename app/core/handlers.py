"""Every error leaves the API as RFC 9457 problem+json."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.errors import PROBLEM_CONTENT_TYPE, ProblemError, problem_body, pydantic_errors
from app.storage import ArtifactMissingError

log = logging.getLogger(__name__)

_HTTP_SLUGS = {404: "route-not-found", 405: "method-not-allowed", 413: "payload-too-large"}


def _problem(request: Request, body: dict, status: int, headers: dict | None = None) -> JSONResponse:
    body.setdefault("instance", request.url.path)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_CONTENT_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem_error(request: Request, exc: ProblemError):
        return _problem(request, exc.to_dict(), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        errors = pydantic_errors(list(exc.errors()))
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return _problem(request, problem_body(422, "validation-error", "Invalid request", detail, errors=errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        slug = _HTTP_SLUGS.get(exc.status_code, "not-found" if exc.status_code == 404 else "conflict")
        if exc.status_code not in _HTTP_SLUGS and exc.status_code >= 500:
            slug = "internal-error"
        title = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}.get(exc.status_code, "Error")
        body = problem_body(exc.status_code, slug, title, str(exc.detail) if exc.detail else None)
        return _problem(request, body, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError):
        log.warning("database unavailable: %s", exc.orig)
        body = problem_body(
            503, "service-unavailable", "Database unavailable", "the database could not be reached; retry shortly"
        )
        return _problem(request, body, 503, {"Retry-After": "5"})

    @app.exception_handler(ArtifactMissingError)
    async def _artifact_missing(request: Request, exc: ArtifactMissingError):
        log.error("artifact missing: %s", exc)
        return _problem(request, problem_body(500, "artifact-missing", "Stored file missing", str(exc)), 500)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        trace_id = uuid.uuid4().hex
        log.exception("unhandled error (trace_id=%s)", trace_id)
        body = problem_body(
            500, "internal-error", "Internal server error", "an unexpected error occurred", trace_id=trace_id
        )
        return _problem(request, body, 500)
