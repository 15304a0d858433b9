"""Forget-request rules: validation against the model and its data, idempotency, queueing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.errors import Conflict, Invalid, NotFound, ProblemError
from app.core.hashing import keyed_hmac, sha256_of_json
from app.core.ids import uuid7
from app.datasets import service as datasets
from app.db import rollback
from app.db.rows import Snapshot
from app.db.types import utcnow
from app.forget_requests import repository
from app.forget_requests.schemas import AUTO_SUMMARY, AutoParams, ForgetRequestBase, ForgetRequestOut, MethodOut
from app.forget_requests.tables import ForgetRequest, IdempotencyKey
from app.jobs import coalescing
from app.jobs import repository as jobs_repo
from app.jobs import service as jobs
from app.jobs.schemas import JobOut
from app.jobs.states import TERMINAL
from app.jobs.tables import Job, JobRequest
from app.models import repository as models_repo
from app.models import service as models
from app.settings import get_settings
from workers.engine.holdout import RULE as HOLDOUT_RULE
from workers.engine.holdout import role_of
from workers.engine.methods.catalog import SPECS, MethodNotApplicable, get_spec  # torch-free: the API imports no torch
from workers.engine.verification.plan import AUTO
from workers.engine.verification.plan import DESCRIPTION as PLANS
from workers.engine.verification.policy import check_change, published


@dataclass
class Answer:
    status: int
    body: dict[str, Any]
    location: str
    replayed: bool = False


def methods() -> list[MethodOut]:
    """``auto`` (the default) and every method of the engine's registry, with their params."""
    auto = MethodOut(
        name=AUTO,
        summary=AUTO_SUMMARY,
        scopes=["class_labels", "sample_ids"],
        needs_update_log=False,
        params_schema=AutoParams.model_json_schema(),
    )
    return [auto] + [
        MethodOut(
            name=m.name,
            summary=m.summary,
            scopes=sorted(m.scopes),
            needs_update_log=m.needs_update_log,
            params_schema=m.Params.model_json_schema(),
        )
        for m in SPECS.values()
    ]


def verification_policy() -> dict[str, Any]:
    """What every unlearn job must pass before it makes a version, and how requests may change it."""
    return {
        **published(get_settings().verification),
        "tests": {
            "class scope": "class_forgetting, utility, relearn",
            "sample scope": "membership_inference, utility, relearn",
            "language models": "lm_loss_band, lm_exact_match, lm_utility, relearn",
        },
        "holdout_roles": {
            "rule": HOLDOUT_RULE,
            "calibration": "the only held-out rows a method or stopping rule reads",
            "evaluation": "test accuracy, membership-inference non-members and every verification test",
        },
        "auto_plans": PLANS,
        "guarantees": {
            "exact": "retrain: trained without the data, correct by construction (tests reported)",
            "verified": "an approximate method whose model passed every test",
            "unverified": "accepted after failing (on_verification_failure: accept); the failed tests are listed",
        },
    }


def get_request(db: Session, forget_request_id: uuid.UUID, *, tenant_id: str) -> ForgetRequest:
    """The request, if it is this tenant's: another tenant's is as absent as a missing one (404)."""
    fr = repository.get(db, forget_request_id)
    if fr is None or fr.tenant_id != tenant_id:
        raise NotFound("forget request", forget_request_id)
    return fr


def get_described(db: Session, forget_request_id: uuid.UUID, *, tenant_id: str) -> ForgetRequestOut:
    """What a poll answers: the request with its jobs (one query), 404 as :func:`get_request`."""
    found = jobs_repo.request_with_jobs(db, forget_request_id)
    if found is None or found[0].tenant_id != tenant_id:
        raise NotFound("forget request", forget_request_id)
    return _out(*found)


def describe(db: Session, fr: ForgetRequest) -> ForgetRequestOut:
    return _out(fr, jobs_repo.jobs_of_request_with_counts(db, fr.id))


def _out(fr: ForgetRequest | Snapshot, jobs: list[tuple[Job | Snapshot, int]]) -> ForgetRequestOut:
    """The request with its jobs, each with how many requests it serves."""
    return ForgetRequestOut.of(fr, [JobOut.of(job, [fr.id], served) for job, served in jobs])


def submit(db: Session, body: ForgetRequestBase, *, idempotency_key: str | None, tenant_id: str, actor: str) -> Answer:
    """Idempotency keys and client request_ids are the tenant's own: another tenant's never match.

    The answer stored under the key this submit would store its own under (the Idempotency-Key, else
    one derived from the request_id) is replayed before the model is looked at. A request_id used
    before under another key, or with another body, is caught by the unique (tenant, request_id) of
    forget_requests when the request is written, and answered then."""
    body_sha = sha256_of_json(body.model_dump(mode="json"))
    stored = repository.get_idempotency(db, tenant_id, idempotency_key or _request_id_key(body))
    if idempotency_key:
        earlier = _stored_answer(stored, body_sha)
    else:
        earlier = _replay(stored) if stored is not None and stored.body_sha256 == body_sha else None
    if earlier:
        return earlier
    try:
        return _accept(db, body, body_sha, idempotency_key, tenant_id, actor)
    except IntegrityError:
        # A concurrent retry with the same key or request_id committed first: answer as it did.
        rollback(db)
        earlier = (idempotency_key and _answer_by_key(db, idempotency_key, body_sha, tenant_id)) or (
            _answer_by_request_id(db, body, body_sha, tenant_id)
        )
        if earlier is None:
            raise
        return earlier


def _request_id_key(body: ForgetRequestBase) -> str:
    """Where the answer to a submit without an Idempotency-Key is stored."""
    return f"request_id:{body.request_id}"


def _replay(row: IdempotencyKey) -> Answer:
    return Answer(row.status_code, row.response, row.location or "", replayed=True)


def _answer_by_key(db: Session, key: str, body_sha: str, tenant_id: str) -> Answer | None:
    return _stored_answer(repository.get_idempotency(db, tenant_id, key), body_sha)


def _stored_answer(row, body_sha: str) -> Answer | None:
    """The answer stored under an Idempotency-Key, if any: 422 if it was for another body."""
    if row is None:
        return None
    if row.body_sha256 != body_sha:
        raise Invalid(
            "this Idempotency-Key was already used with a different request body",
            slug="idempotency-key-reused",
            title="Idempotency-Key reused",
        )
    return _replay(row)


def _answer_by_request_id(db: Session, body: ForgetRequestBase, body_sha: str, tenant_id: str) -> Answer | None:
    existing = repository.get_by_client_id(db, tenant_id, body.request_id)
    if existing is None:
        return None
    if existing.body_sha256 != body_sha:
        raise Conflict(
            f"request_id {body.request_id!r} was already used with a different request body",
            slug="request-id-conflict",
            title="request_id already used",
            forget_request_id=str(existing.id),
        )
    return _replay(repository.idempotency_of_request(db, existing.id))


def _accept(
    db: Session,
    body: ForgetRequestBase,
    body_sha: str,
    key: str | None,
    tenant_id: str,
    actor: str,
) -> Answer:
    settings = get_settings()
    model, dataset = models_repo.get_with_dataset(db, body.model_id) or (None, None)
    if model is None or dataset is None or model.tenant_id != tenant_id:  # another tenant's is as absent
        raise NotFound("model", body.model_id)
    scope_type, values = body.scope.type, body.scope.values
    _check_scope(db, model, dataset, scope_type, values)
    if body.method != AUTO:  # auto plans only methods that fit (workers/engine/verification/plan.py)
        _check_method(get_spec(body.method), scope_type, model)
    _check_layers(model, dataset, getattr(body.params, "layers", None))
    _check_calibration_documents(db, model, dataset, getattr(body.params, "calibration_documents", None))
    verification = _verification_change(body)
    on_failure = getattr(body, "on_verification_failure", None)

    now = utcnow()
    fr = ForgetRequest(
        id=uuid7(),
        tenant_id=tenant_id,
        request_id=body.request_id,
        model_id=model.id,
        regulation=body.regulation,
        subject_ref=keyed_hmac(settings.subject_hmac_key, body.subject) if body.subject else None,
        scope_type=scope_type,
        scope_values=values,
        scope_count=len(values),
        scope_sha256=sha256_of_json(sorted(values)),
        method=body.method,
        params=body.params.model_dump(mode="json"),
        verification=verification,
        on_verification_failure=on_failure,
        state="QUEUED",
        body_sha256=body_sha,
        received_at=now,
        due_at=now + timedelta(days=settings.request_due_days),
        updated_at=now,
    )
    audit.record(
        db,
        action="forget_request.received",
        actor=actor,
        tenant_id=tenant_id,
        entity_type="forget_request",
        entity_id=fr.id,
        model_id=model.id,
        forget_request_id=fr.id,
        payload={
            "request_id": fr.request_id,
            "regulation": fr.regulation,
            "scope_type": scope_type,
            "scope_count": fr.scope_count,
            "scope_sha256": fr.scope_sha256,
            "method": fr.method,
            "params": fr.params,
            "verification": fr.verification,  # with the reason, when a threshold is loosened
            "on_verification_failure": fr.on_verification_failure,
            "subject_ref": fr.subject_ref,
            "due_at": fr.due_at.isoformat(),
        },
    )
    joined = coalescing.join_queued(db, model=model, fr=fr, actor=actor)
    db.add(fr)
    if joined:
        job, served = joined
        db.add(JobRequest(job_id=job.id, forget_request_id=fr.id))
    else:
        job = jobs.create(
            db,
            kind="unlearn",
            model=model,
            method=fr.method,
            params=fr.params,
            request_ids=[fr.id],
            actor=actor,
            verification=fr.verification,
            on_verification_failure=fr.on_verification_failure,
        )
        served = 1
    location = f"/v1/forget-requests/{fr.id}"
    # Built from the rows being written (what describe() would read back), without reading them back.
    answer = Answer(202, ForgetRequestOut.of(fr, [JobOut.of(job, [fr.id], served)]).model_dump(mode="json"), location)
    db.add(
        IdempotencyKey(
            tenant_id=tenant_id,
            key=key or _request_id_key(body),
            body_sha256=body_sha,
            status_code=answer.status,
            response=answer.body,
            location=location,
            forget_request_id=fr.id,
            created_at=now,
        )
    )
    db.flush()  # a concurrent retry with the same key or request_id raises IntegrityError here, in submit()
    return answer


def _check_scope(db: Session, model: Snapshot, dataset: Snapshot, scope_type: str, values: list) -> None:
    if scope_type == "class_labels" and dataset.format == "text":
        raise Invalid(
            f"model {model.id} is a language model: a language model has no classes; name documents "
            "(scope sample_ids with the documents' IDs)",
            title="No classes in a language model",
        )
    if scope_type == "sample_ids":
        limit = get_settings().max_ids_per_request
        if len(values) > limit:
            raise Invalid(
                f"{len(values)} sample IDs in one request; the limit is {limit} "
                "(UNLEARND_MAX_IDS_PER_REQUEST): split it into several requests"
            )
        datasets.check_forget_samples(db, dataset, values)
        return
    unknown = sorted(set(values) - set(dataset.classes))
    if unknown:
        raise Invalid(
            f"class labels {unknown[:100]} are not in the model's dataset (classes {dataset.classes})",
            title="Unknown class labels",
            unknown_class_labels=unknown[:100],
        )
    if set(values) >= set(dataset.classes):
        raise Invalid("forgetting every class leaves nothing to retain", title="Nothing would be retained")


def _check_method(method, scope_type: str, model: Snapshot) -> None:
    kind = models.kind_of(model.architecture)
    if kind not in method.kinds:
        try:
            method.check_applicable(scope_type, model.update_log_id is not None, kind)
        except MethodNotApplicable as exc:
            raise ProblemError(
                422,
                "method-not-applicable",
                "Method does not serve this model",
                str(exc),
                model_kind=kind,
                usable_methods=[m.name for m in SPECS.values() if kind in m.kinds and scope_type in m.scopes],
            ) from None
    if scope_type not in method.scopes:
        raise ProblemError(
            422,
            "method-not-applicable",
            "Method does not support this scope",
            f"{method.name} works only with {' or '.join(sorted(method.scopes))} scopes, not {scope_type}",
            supported_scopes=sorted(method.scopes),
        )
    if method.needs_update_log and model.update_log_id is None:
        usable = [
            m.name for m in SPECS.values() if scope_type in m.scopes and kind in m.kinds and not m.needs_update_log
        ]
        why = (
            "it was not trained by the service with an update log (set update_log when registering)"
            if model.update_log_spec is None
            else "its update log was retired when it was retrained"
        )
        raise Conflict(
            f"{method.name} subtracts the model's recorded training updates, and this model has none: "
            f"{why}. Methods that work: {', '.join(usable)}",
            slug="method-not-applicable",
            title="Method needs an update log",
            usable_methods=usable,
        )


def _check_calibration_documents(db: Session, model: Snapshot, dataset: Snapshot, ids: list[str] | None) -> None:
    """gradient_ascent's calibration_documents: held-out documents of the model's text dataset, of
    the calibration part (a method never reads the evaluation part, which verification reads)."""
    if not ids:
        return
    if models.kind_of(model.architecture) != "language_model":
        raise Invalid("params.calibration_documents applies to language models only", title="Not a language model")
    datasets.check_held_out_samples(db, dataset, ids, field="params.calibration_documents")
    evaluation = [d for d in ids if role_of(d) != "calibration"]
    if evaluation:
        raise Invalid(
            f"params.calibration_documents names {len(evaluation)} held-out documents of the evaluation part, "
            "which only verification reads; name documents of the calibration part "
            "(GET /v1/verification-policy explains the split)",
            title="Not calibration documents",
            evaluation_documents=evaluation[:100],
        )


def _verification_change(body: ForgetRequestBase) -> dict[str, Any] | None:
    """The request's changes to the verification policy, as stored; 422 past the bounds or when a
    threshold is loosened without a reason."""
    if body.verification is None:
        return None
    problems = check_change(get_settings().verification, body.verification)
    if problems:
        raise Invalid(
            "verification: " + "; ".join(problems), title="Verification policy not allowed", problems=problems
        )
    return body.verification.model_dump(exclude_none=True) or None


def _check_layers(model: Snapshot, dataset: Snapshot, layers: list[str] | None) -> None:
    """A method's ``layers`` must name layers of the model (else its job could only fail later)."""
    if not layers:
        return
    shapes = models.tensor_layout(model.architecture, model.arch_config, dataset)
    unknown = []
    for name in layers:
        prefixes = models.layer_prefixes(model.architecture, [name]) or []  # None: "all" of a language model
        if not all(any(k == p or k.startswith(p + ".") for k in shapes) for p in prefixes):
            unknown.append(name)
    if unknown:
        known = sorted({k.rsplit(".", 1)[0] for k in shapes})
        raise Invalid(
            f"params.layers names layers the model does not have: {unknown}; its layers: {known}",
            title="Unknown layers",
            unknown_layers=unknown,
        )


def cancel(db: Session, fr: ForgetRequest, *, actor: str) -> ForgetRequest:
    open_jobs = [j for j in jobs_repo.jobs_of_request(db, fr.id) if j.state not in TERMINAL]
    if not open_jobs:
        raise Conflict(
            f"forget request {fr.id} is {fr.state}; there is nothing left to cancel",
            slug="job-not-cancellable",
            title="Nothing to cancel",
            state=fr.state,
        )
    for job in open_jobs:
        if jobs_repo.request_count(db, job.id) > 1:  # a coalesced job: the others still want it
            coalescing.leave(db, job, fr, actor=actor)
        else:
            jobs.request_cancel(db, job, actor=actor)
    db.refresh(fr)
    return fr
