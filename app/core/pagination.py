"""Cursor pagination: ``page_size`` + opaque ``page_token`` -> ``next_page_token``.

A token is the sort key of the last row served, base64url-encoded JSON, so pages stay stable when
rows are added while a client walks them.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from app.core.errors import Invalid

T = TypeVar("T")

PageSize = Annotated[int, Query(ge=1, le=500, description="Items per page (1-500).")]
PageToken = Annotated[str | None, Query(description="`next_page_token` from the previous page.")]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_page_token: str | None = None


def encode_token(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_token(token: str | None) -> list[Any] | None:
    if token is None:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        key = None
    if not isinstance(key, list):
        raise Invalid("page_token is not a token this API issued.", title="Invalid page token")
    return key


def decode_int_token(token: str | None, length: int, maximum: int) -> list[int] | None:
    """For lists ordered by integers (seq, version, attempt and step): ``length`` of them, each in
    0..``maximum`` (the column's range), so a forged token is a 422 and never reaches SQL."""
    key = decode_token(token)
    if key is None:
        return None
    if len(key) != length or not all(type(k) is int and 0 <= k <= maximum for k in key):
        raise Invalid("page_token is not a token this API issued.", title="Invalid page token")
    return key


def page_of(rows: list[Any], page_size: int, key: Any, convert: Any) -> Page:
    """Build a page from up to ``page_size + 1`` fetched rows; the extra row only says "more"."""
    more = len(rows) > page_size
    rows = rows[:page_size]
    return Page(
        items=[convert(r) for r in rows],
        next_page_token=encode_token(key(rows[-1])) if more and rows else None,
    )


def decode_id_token(token: str | None) -> uuid.UUID | None:
    """For lists ordered by (time-ordered) id: the token holds the last id served."""
    key = decode_token(token)
    if key is None:
        return None
    try:
        return uuid.UUID(str(key[0]))
    except (ValueError, IndexError):
        raise Invalid("page_token is not a token this API issued.", title="Invalid page token") from None


def id_page(rows: list[Any], page_size: int, convert: Any) -> Page:
    return page_of(rows, page_size, key=lambda r: [str(r.id)], convert=convert)
