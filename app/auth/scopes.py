"""The scopes an API key can hold. ``admin`` holds every other scope and may manage keys."""

from __future__ import annotations

from typing import Literal

Scope = Literal["requests:write", "requests:read", "models:write", "models:read", "audit:read", "admin"]
ALL_SCOPES: tuple[str, ...] = ("requests:write", "requests:read", "models:write", "models:read", "audit:read", "admin")
ADMIN = "admin"


def grants(held: frozenset[str], needed: str) -> bool:
    return needed in held or ADMIN in held
