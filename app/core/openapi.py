"""The OpenAPI document says what errors really look like: RFC 9457 problem+json.

FastAPI documents a 422 as ``application/json`` ``HTTPValidationError``; every error of this API is
``application/problem+json`` (app/core/handlers.py). This rewrites each operation's 422 to the
``Problem`` schema and adds it as the ``default`` response (401, 403, 404, 409, 410, 413, 503...), so
clients and schema-driven tools (the schemathesis run in tests/integration/test_schema_fuzz.py) see
the truth.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.core.errors import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. Extensions (e.g. `unknown_sample_ids`) depend on `type`.",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string", "description": "`/problems/<slug>`: GET it for what the problem means."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "The request path."},
        "errors": {
            "type": "array",
            "description": "Validation problems, one per offending field.",
            "items": {
                "type": "object",
                "required": ["loc", "field", "message", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]}},
                    "field": {"type": "string", "description": "`loc` joined with dots, e.g. `body.name`."},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}
_PROBLEM = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a FastAPI OpenAPI document in place (and return it)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                responses["422"] = {
                    "description": "The request did not validate; `errors` names each offending field.",
                    "content": _PROBLEM,
                }
            responses.setdefault("default", {"description": "An error, as problem+json.", "content": _PROBLEM})
    text = repr(schema["paths"])
    for unused in ("HTTPValidationError", "ValidationError"):
        if f"#/components/schemas/{unused}'" not in text:
            components.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
