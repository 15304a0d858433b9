"""One error type for the whole service, rendered as RFC 9457 problem+json by one handler.

``type`` is a stable URI reference (``/problems/<slug>``); ``GET /problems/<slug>`` describes it.
"""

from __future__ import annotations

from typing import Any

PROBLEM_CONTENT_TYPE = "application/problem+json"

# slug -> what it means; the catalogue served at /problems/<slug>
PROBLEM_TYPES: dict[str, str] = {
    "validation-error": "The request body, query or path did not validate; `errors` lists each problem.",
    "not-found": "The resource does not exist (or is not visible to you).",
    "route-not-found": "No API route has this path.",
    "method-not-allowed": "The route exists but not with this HTTP method; the `Allow` header lists the "
    "methods it takes (`OPTIONS` on a route answers with the same header).",
    "conflict": "The request conflicts with the current state of the resource.",
    "unknown-sample-ids": "Some sample IDs are not in the model's dataset; `unknown_sample_ids` lists "
    "the first 100 and `unknown_count` counts them. Nothing was queued.",
    "not-training-samples": "Some sample IDs are in the dataset but not in its training split, so the "
    "model never learned from them.",
    "duplicate-sample-ids": "A dataset's sample IDs must be unique; `duplicate_sample_ids` lists them.",
    "invalid-dataset": "The dataset file is not a valid .npz or JSON Lines file of the documented shape; "
    "`detail` says what is wrong (for JSON Lines, on which line).",
    "server-path-refused": "The request names a file on the server outside the directories the deployment "
    "allows your tenant (`<root>/<tenant id>/` for each root in UNLEARND_DATASET_ROOTS), or server paths are "
    "disabled there.",
    "architecture-dataset-mismatch": "The architecture cannot train on this dataset: language models (gpt2) need "
    "a text (JSON Lines) dataset, classifiers an array (.npz) dataset.",
    "invalid-weights": "The uploaded weights do not match the architecture: `missing_keys`, "
    "`unexpected_keys` and `shape_mismatches` name the tensors.",
    "idempotency-key-reused": "This Idempotency-Key was used before with a different request body.",
    "request-id-conflict": "This client request_id was used before with a different request body.",
    "method-not-applicable": "The unlearning method cannot serve this scope or this model.",
    "model-not-ready": "The model has no trained version to unlearn from.",
    "update-log-incomplete": "The job refused to subtract (amnesiac) or average first-epoch gradients "
    "(gradient_ascent) because the update log no longer holds every recorded step of the forget set: an "
    "earlier erasure purged some without subtracting them, or they were never recorded. The counts say how "
    "many steps of how many samples; the job made no version. Use retrain, or a method that does not need "
    "the log.",
    "job-not-cancellable": "The job has already finished or is verifying its result.",
    "payload-too-large": "The request body or upload is over the configured limit.",
    "unstorable-value": "A value in the request passed validation but the database refused it (for example "
    "a number out of its column's range); change the value. Nothing was stored.",
    "version-retired": "This model version still held samples that an erasure removed, so it was retired "
    "and its checkpoint is no longer served (its file is purged); use the model's head version.",
    "version-unavailable": "This model version's checkpoint is not available for download.",
    "job-failed": "The job failed; `detail` says why.",
    "certificate-not-available": "A deletion certificate exists only for a SUCCEEDED forget request; "
    "`state` is the request's state now.",
    "artifact-missing": "A stored file this resource needs is missing from the artifact store.",
    "artifact-store-write-failed": "The artifact store refused a write (for example its disk is full); the job "
    "stored no version. Submit it again once the store has room.",
    "unauthenticated": "No valid API key: send `Authorization: Bearer <key>` with a key that exists and "
    "is not revoked.",
    "insufficient-scope": "The API key is valid but lacks a scope this operation needs; `required_scopes` names them.",
    "service-unavailable": "A backing service (database, broker) is not reachable; retry later.",
    "internal-error": "An unexpected server error; the log has the details under `trace_id`.",
}


class ProblemError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, slug: str, title: str, detail: str | None = None, **extensions: Any):
        assert slug in PROBLEM_TYPES, f"undocumented problem type {slug!r}"
        super().__init__(detail or title)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extensions = extensions
        self.headers: dict[str, str] | None = None  # e.g. WWW-Authenticate on a 401

    def to_dict(self, instance: str | None = None) -> dict[str, Any]:
        return problem_body(self.status, self.slug, self.title, self.detail, instance, **self.extensions)


def problem_body(
    status: int, slug: str, title: str, detail: str | None = None, instance: str | None = None, **ext: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": f"/problems/{slug}", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if instance:
        body["instance"] = instance
    body.update(ext)
    return body


class NotFound(ProblemError):
    def __init__(self, what: str, ident: object):
        super().__init__(404, "not-found", f"{what} not found", f"No {what} with id {ident}.")


class Gone(ProblemError):
    def __init__(self, detail: str, slug: str, title: str, **ext: Any):
        super().__init__(410, slug, title, detail, **ext)


class Conflict(ProblemError):
    def __init__(self, detail: str, slug: str = "conflict", title: str = "Conflict", **ext: Any):
        super().__init__(409, slug, title, detail, **ext)


class Invalid(ProblemError):
    """A 422 for rules a schema cannot express (they need the database or a file's contents)."""

    def __init__(self, detail: str, slug: str = "validation-error", title: str = "Invalid request", **ext):
        super().__init__(422, slug, title, detail, **ext)


def pydantic_errors(errors: list[dict[str, Any]], prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """pydantic's error list -> ours: where (a path), what (the message), and the offending input type."""
    out = []
    for e in errors:
        loc = [*prefix, *e.get("loc", ())]
        out.append(
            {"loc": loc, "field": ".".join(str(p) for p in loc), "message": e.get("msg", ""), "type": e.get("type", "")}
        )
    return out
