"""Request and response shapes. The request body is a union discriminated by ``method``: each method
contributes its own ``params`` model from the engine, so the OpenAPI schema documents every param."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from app.core.validation import ClientKey, PrintableText, SampleId
from app.jobs.schemas import JobOut
from workers.engine.methods import METHODS


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


def _request_model(name: str):
    method = METHODS[name]
    return create_model(
        f"ForgetRequest_{name}",
        __base__=ForgetRequestBase,
        __doc__=method.summary,
        method=(Literal[name], Field(description=method.summary)),
        params=(method.Params, Field(default_factory=method.Params)),
    )


_VARIANTS = tuple(_request_model(name) for name in METHODS)
ForgetRequestCreate = Annotated[Union[_VARIANTS], Field(discriminator="method")]  # noqa: UP007


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
