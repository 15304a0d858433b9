"""What the API process installs: log setup, request ids + access line + HTTP metrics, /metrics and
/v1/workers. (The package's __init__ stays empty so the worker can import the log context alone.)"""

from __future__ import annotations

from fastapi import FastAPI

from app.observability.logs import configure_logging
from app.observability.request_id import RequestIdMiddleware
from app.observability.router import router as metrics_router
from app.worker_status.router import router as workers_router

__all__ = ["configure_logging", "install"]


def install(app: FastAPI) -> None:
    """Add after the body limit: the request id then wraps everything but the Server-Timing header,
    413s included."""
    app.add_middleware(RequestIdMiddleware)
    app.include_router(metrics_router)
    app.include_router(workers_router)
