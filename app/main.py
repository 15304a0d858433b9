"""The FastAPI application: routers, problem+json errors, the /problems catalogue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.audit import sequencer
from app.audit.router import heads_router as audit_heads_router
from app.audit.router import router as audit_router
from app.auth.router import router as auth_router
from app.certificates.router import router as certificates_router
from app.core import handlers, openapi
from app.core.body_limit import BodySizeLimitMiddleware
from app.core.errors import PROBLEM_TYPES, NotFound
from app.core.heap import freeze_startup_objects
from app.core.methods import AllowedMethodsMiddleware
from app.core.server_timing import ServerTimingMiddleware
from app.datasets.router import router as datasets_router
from app.forget_requests.router import router as forget_requests_router
from app.health.router import router as health_router
from app.jobs.router import router as jobs_router
from app.models.router import router as models_router
from app.observability import api as observability
from app.settings import get_settings

DESCRIPTION = """unlearnd makes trained models forget.

Every /v1 call but `GET /v1/keys` needs an API key (`Authorization: Bearer unl_...`) with the scope
the operation names; a key sees only its tenant's data. Register a dataset and a model, POST a
forget request (sample IDs or class labels), poll it, download the unlearned checkpoint, and read
the audit trail. Errors are RFC 9457 problem+json; their `type`
links to `/problems/<slug>`.
"""


DOCS_ASSETS = "/docs-assets"


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    # every sync endpoint runs on anyio's thread pool: few threads on a small host (UNLEARND_API_THREADS)
    to_thread.current_default_thread_limiter().total_tokens = get_settings().api_threads
    yield


def create_app() -> FastAPI:
    settings = get_settings()
    observability.configure_logging(settings)
    # /docs and /redoc load Swagger UI and ReDoc from the package's files under /docs-assets, never
    # from a CDN: they work offline and on a network that blocks one.
    app = FastAPIOffline(
        title="unlearnd", version="0.1.0", description=DESCRIPTION, static_url=DOCS_ASSETS, lifespan=_lifespan
    )
    handlers.install(app)
    openapi.install(app)  # errors documented as problem+json
    app.add_middleware(AllowedMethodsMiddleware, routes=app.router.routes)  # 405 with Allow; OPTIONS
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_upload_bytes)
    observability.install(app)  # request ids, access log, /metrics, /v1/workers
    app.add_middleware(ServerTimingMiddleware)  # outermost: times everything the app does
    routers = (health_router, datasets_router, models_router, forget_requests_router, jobs_router, audit_router)
    for router in (*routers, audit_heads_router, certificates_router, auth_router):
        app.include_router(router)

    @app.get("/problems/{slug}", tags=["health"], summary="What a problem type means")
    def problem_type(slug: str):
        if slug not in PROBLEM_TYPES:
            raise NotFound("problem type", slug)
        return {"type": f"/problems/{slug}", "description": PROBLEM_TYPES[slug]}

    sequencer.chain_in_background(settings.api_chains_audit)
    freeze_startup_objects()
    return app
