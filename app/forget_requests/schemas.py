"""Request and response shapes. The request body is a union discriminated by ``method``: each method
contributes its own ``params`` model from the engine, so the OpenAPI schema documents every param."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, create_model, model_validator

from app.core.validation import ClientKey, PrintableText, SampleId
from app.jobs.schemas import JobOut
from workers.engine.methods.catalog import SPECS
from workers.engine.verification.plan import AUTO
from workers.engine.verification.policy import OnFailure, VerificationChange

AUTO_SUMMARY = (
    "Let the service choose: the methods that fit the scope, the model and its update log, fastest expected "
    "to pass first and retrain (exact) last, until one's model passes verification."
)


class ForgetScope(BaseModel):
    """Exactly one of ``sample_ids`` (training samples) or ``class_labels`` (whole classes)."""

    model_config = ConfigDict(extra="forbid")

    sample_ids: list[SampleId] | None = Field(None, min_length=1, description="Training-sample IDs to forget.")
    class_labels: list[Annotated[int, Field(ge=0)]] | None = Field(
        None, min_length=1, description="Class labels whose every training sample is forgotten."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ForgetScope:
        if (self.sample_ids is None) == (self.class_labels is None):
            raise ValueError("give exactly one of sample_ids or class_labels, with at least one entry")
        return self

    @property
    def type(self) -> str:
        return "sample_ids" if self.sample_ids is not None else "class_labels"

    @property
    def values(self) -> list:
        """The scope without repeats, in the order first given."""
        raw = self.sample_ids if self.sample_ids is not None else self.class_labels
        return list(dict.fromkeys(raw))


class ForgetRequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: ClientKey = Field(
        description="Your own id for this request; a repeat with the same body returns the original answer."
    )
    model_id: uuid.UUID
    scope: ForgetScope
    regulation: Literal["gdpr", "ccpa", "other"] = "gdpr"
    subject: PrintableText | None = Field(
        None, min_length=1, max_length=500, description="Who asked (e.g. a user id). Stored only as a keyed HMAC."
    )
    verification: VerificationChange | None = Field(
        None,
        description="Changes to the verification policy for this request: tighten any threshold; loosen one "
        "(within the bounds GET /v1/verification-policy lists) only with a reason, kept in the audit trail.",
    )


def _request_model(name: str):
    method = SPECS[name]
    return create_model(
        f"ForgetRequest_{name}",
        __base__=ForgetRequestBase,
        __doc__=method.summary,
        method=(Literal[name], Field(description=method.summary)),
        params=(method.Params, Field(default_factory=method.Params)),
        on_verification_failure=(
            OnFailure | None,
            Field(
                None,
                description="When the method's model fails verification: fail (the default: no new version, "
                "the earlier ones kept), escalate (go on with method auto's plan) or accept (a version "
                "certified as unverified).",
            ),
        ),
    )


class AutoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ForgetRequestAuto(ForgetRequestBase):
    """The default: the service picks the methods (fastest expected to pass first, retrain last) and
    keeps the first model that passes verification. GET /v1/verification-policy says the plans."""

    method: Literal["auto"] = Field(AUTO, description=AUTO_SUMMARY)
    params: AutoParams = Field(default_factory=AutoParams)


def _method_of(body: Any) -> str:
    """The variant a body is: its ``method``, ``auto`` when it names none."""
    value = body.get("method", AUTO) if isinstance(body, dict) else getattr(body, "method", AUTO)
    return value if isinstance(value, str) else repr(value)


_VARIANTS = {AUTO: ForgetRequestAuto, **{name: _request_model(name) for name in SPECS}}
# A callable discriminator (for the default) leaves the mapping out of the JSON schema: it is given
# here, so that OpenAPI clients still pick the variant by ``method``.
_MAPPING = {name: f"#/components/schemas/{model.__name__}" for name, model in _VARIANTS.items()}
ForgetRequestCreate = Annotated[
    Union[tuple(Annotated[model, Tag(name)] for name, model in _VARIANTS.items())],  # noqa: UP007
    Discriminator(_method_of),
    Field(json_schema_extra={"discriminator": {"propertyName": "method", "mapping": _MAPPING}}),
]


class ScopeOut(BaseModel):
    type: str
    count: int
    sha256: str = Field(description="sha256 of the canonical JSON of the sorted scope.")
    class_labels: list[int] | None = None


class ForgetRequestOut(BaseModel):
    id: uuid.UUID
    request_id: str
    model_id: uuid.UUID
    regulation: str
    subject_ref: str | None
    scope: ScopeOut
    method: str
    params: dict[str, Any]
    verification: dict[str, Any] | None = Field(None, description="The request's changes to the verification policy.")
    on_verification_failure: str | None = Field(None, description="fail, escalate or accept (explicit methods).")
    state: str
    received_at: datetime
    due_at: datetime
    updated_at: datetime
    jobs: list[JobOut]

    @classmethod
    def of(cls, fr, jobs: list[JobOut]) -> ForgetRequestOut:
        return cls(
            id=fr.id,
            request_id=fr.request_id,
            model_id=fr.model_id,
            regulation=fr.regulation,
            subject_ref=fr.subject_ref,
            scope=ScopeOut(
                type=fr.scope_type,
                count=fr.scope_count,
                sha256=fr.scope_sha256,
                class_labels=fr.scope_values if fr.scope_type == "class_labels" else None,
            ),
            method=fr.method,
            params=fr.params,
            verification=fr.verification,
            on_verification_failure=fr.on_verification_failure,
            state=fr.state,
            received_at=fr.received_at,
            due_at=fr.due_at,
            updated_at=fr.updated_at,
            jobs=jobs,
        )


class MethodOut(BaseModel):
    name: str
    summary: str
    scopes: list[str]
    needs_update_log: bool
    params_schema: dict[str, Any]
