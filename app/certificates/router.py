from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from app.audit import sequencer
from app.auth.deps import RequestsReader
from app.certificates import service
from app.certificates.schemas import KeysOut, SignedCertificateOut
from app.core.deps import SessionDep
from app.core.hashing import canonical_json
from app.db import commit

router = APIRouter(prefix="/v1", tags=["certificates"])


def _canonical(body: dict) -> Response:
    """Sorted keys, no spaces: two fetches of one certificate are byte-identical."""
    return Response(canonical_json(body), media_type="application/json")


@router.get("/keys", response_model=KeysOut, summary="Public keys that verify deletion certificates")
def list_keys():  # sync: the first call in a process reads (or creates) the key file
    return _canonical(service.public_keys())


@router.get(
    "/forget-requests/{forget_request_id}/certificate",
    response_model=SignedCertificateOut,
    summary="Signed deletion certificate of a SUCCEEDED request (verify offline with GET /v1/keys)",
)
def get_certificate(db: SessionDep, caller: RequestsReader, forget_request_id: uuid.UUID):
    sequencer.flush()  # its anchor is an audit event: it must be chained
    certificate = service.issue(db, forget_request_id, tenant_id=caller.tenant_id)
    commit(db)
    return _canonical(certificate)
