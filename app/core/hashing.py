"""Canonical JSON and sha256 helpers: one definition, used for body hashes, scope hashes and audit."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def sha256_of_json(value: Any) -> str:
    return sha256_hex(canonical_json(value))


def keyed_hmac(key: str, message: str) -> str:
    """HMAC-SHA256: how subject references are stored (never the raw identifier)."""
    return hmac.new(key.encode(), message.encode(), hashlib.sha256).hexdigest()
