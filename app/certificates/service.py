"""Certificate rules: what a deletion certificate says, when one can be issued, and how it is signed.

The document is a pure function of stored, immutable facts (no "issued at" clock, the code version
fixed per deployment) and Ed25519 signatures are deterministic, so asking twice returns the same bytes:
a certificate can be re-fetched at any time and compared with a copy an auditor kept.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from app.audit import heads
from app.audit import repository as audit_repo
from app.certificates.code_version import code_version
from app.certificates.keys import signing_key
from app.certificates.offline import ALG, CERTIFICATE_TYPE, b64url_encode, signing_input
from app.core.errors import Conflict
from app.forget_requests import service as forget_requests
from app.forget_requests.tables import ForgetRequest
from app.jobs import repository as jobs_repo
from app.jobs.states import SUCCEEDED
from app.jobs.tables import Job
from app.models import repository as models_repo
from app.models.tables import Model

# The events the job's success transaction writes for the request (app/jobs/completion.py):
# job.succeeded, then dataset.samples_erased. The anchor is the latest of them: the chain up to it
# covers the request's whole story (received, queued, ran, succeeded, its samples tombstoned). It is
# restricted to these actions and this job so that events appended later (a version retired or
# purged) never move the anchor, and the certificate stays byte-identical.
ANCHOR_ACTIONS = ("job.succeeded", "dataset.samples_erased")


def _not_available(fr: ForgetRequest, why: str) -> Conflict:
    return Conflict(
        f"forget request {fr.id} {why}",
        slug="certificate-not-available",
        title="Certificate not available",
        state=fr.state,
    )


def issue(db: Session, forget_request_id: uuid.UUID, *, tenant_id: str) -> dict[str, Any]:
    """The signed certificate of a SUCCEEDED request: ``{"certificate": ..., "signature": ...}``."""
    fr = forget_requests.get_request(db, forget_request_id, tenant_id=tenant_id)
    if fr.state != SUCCEEDED:
        raise _not_available(fr, f"is {fr.state}; a certificate is issued once it has SUCCEEDED")
    job = next((j for j in reversed(jobs_repo.jobs_of_request(db, fr.id)) if j.state == SUCCEEDED), None)
    if job is None:
        raise _not_available(fr, "has no succeeded job")
    anchor = audit_repo.latest_event_of_job(db, forget_request_id=fr.id, job_id=job.id, actions=ANCHOR_ACTIONS)
    if anchor is None:
        raise _not_available(fr, "has no audit event recording its job's success")
    head = _chain_head(db, anchor.seq)
    model = models_repo.get(db, job.model_id)
    evidence = job_evidence(job)
    certificate = {
        "type": CERTIFICATE_TYPE,
        "version": 3,
        "guarantee": evidence["guarantee"],
        "claim": _claim(fr, job, model, evidence),
        "forget_request_id": str(fr.id),
        "request_id": fr.request_id,
        "regulation": fr.regulation,
        "subject_ref": fr.subject_ref,  # the keyed HMAC: the subject is never in the document
        "scope": {"type": fr.scope_type, "count": fr.scope_count, "sha256": fr.scope_sha256},
        "model": {"id": str(model.id), "name": model.name},
        "job_id": str(job.id),
        "source_version": _version(db, fr, model, job.source_version),
        "result_version": _version(db, fr, model, job.result_version),
        "method": job.method,
        "params": job.params,
        "methods_tried": evidence["methods_tried"],
        "code_version": code_version(),
        "verification": evidence["verification"],
        "metrics": job.metrics,
        "times": {
            "received_at": _iso(fr.received_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
        },
        "audit_anchor": {"seq": anchor.seq, "hash": anchor.hash},
        "chain_head": {k: heads.document(head)["head"][k] for k in ("seq", "hash", "signed_at")},
    }
    return sign(certificate)


def _chain_head(db: Session, anchor_seq: int):
    """The earliest signed chain head covering the anchor, signed now if none does yet (the caller
    commits it): a re-fetch names the same head, so the certificate stays byte-identical."""
    head = audit_repo.head_at_or_after(db, anchor_seq)
    return head if head is not None else heads.sign_head(db)


def sign(certificate: dict[str, Any]) -> dict[str, Any]:
    key = signing_key()
    value = key.sign(signing_input(certificate))
    return {"certificate": certificate, "signature": {"alg": ALG, "kid": key.kid, "value": b64url_encode(value)}}


def public_keys() -> dict[str, Any]:
    return {"keys": [signing_key().public_description()]}


def _version(db: Session, fr: ForgetRequest, model: Model, number: int | None) -> dict[str, Any]:
    row = None if number is None else models_repo.get_version(db, model.id, number)
    if row is None:
        raise _not_available(fr, f"names version {number} of model {model.id}, which is not recorded")
    return {"number": row.version, "sha256": row.sha256}


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def job_evidence(job: Job) -> dict[str, Any]:
    """The guarantee a job's result carries, its tests and the methods tried (workers/runner/attempts.py).
    A job from before the gate existed: ``exact`` for a retrain, else ``unverified`` (no test ran)."""
    metrics = job.metrics or {}
    gate = metrics.get("verification")
    if not isinstance(gate, dict):
        guarantee = "exact" if job.method == "retrain" else "unverified"
        return {
            "guarantee": guarantee,
            "verification": {"tests": [], "note": "made before the verification gate; no test ran"},
            "methods_tried": [{"method": job.method, "outcome": guarantee}],
        }
    tests = [
        {k: t.get(k) for k in ("name", "statistic", "threshold", "comparison", "passed", "note") if k in t}
        for t in gate.get("tests", [])
    ]
    return {
        "guarantee": gate["guarantee"],
        "verification": {
            "tests": tests,
            "failed_tests": [t["name"] for t in tests if t.get("passed") is False],
            "policy": gate.get("policy"),
            "policy_change": gate.get("policy_change"),  # with the reason when a threshold was loosened
        },
        "methods_tried": [
            {"method": a["method"], "params": a.get("params", {}), "outcome": a["outcome"]}
            for a in metrics.get("attempts", [])
        ],
    }


def _claim(fr: ForgetRequest, job: Job, model: Model, evidence: dict[str, Any]) -> str:
    """One line a person can read; the structured fields beside it are what a program checks. Only a
    result that passed every test is called verified."""
    one, many = ("training sample", "training samples") if fr.scope_type == "sample_ids" else ("class", "classes")
    what = one if fr.scope_count == 1 else many
    used = evidence["methods_tried"][-1]["method"] if evidence["methods_tried"] else job.method
    tests = evidence["verification"]["tests"]
    if evidence["guarantee"] == "exact":
        how = "exact: retrained from scratch without them"
    elif evidence["guarantee"] == "verified":
        how = "verified: passed " + ", ".join(f"{t['name']} ({_number(t['statistic'])})" for t in tests)
    else:
        failed = evidence["verification"].get("failed_tests") or []
        how = "UNVERIFIED: " + (f"accepted after failing {', '.join(failed)}" if failed else "no test ran")
    return (
        f"Removed {fr.scope_count} {what} (scope sha256 {fr.scope_sha256[:16]}) from model "
        f"{model.name!r}, version {job.source_version} -> {job.result_version}, by {used} "
        f"for a {fr.regulation.upper()} request; {how}."
    )


def _number(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"
