"""Time-ordered UUIDs (version 7, RFC 9562): ids sort by creation, which cursor pages rely on."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last = 0


def uuid7() -> uuid.UUID:
    """48-bit millisecond timestamp, then random bits; strictly increasing within this process."""
    global _last
    with _lock:
        ms = time.time_ns() // 1_000_000
        rand = int.from_bytes(os.urandom(10), "big")
        value = (ms << 80) | rand
        # monotonic even within one millisecond (or if the clock steps back)
        if value <= _last:
            value = _last + 1
        _last = value
    value &= ~(0xF << 76)
    value |= 0x7 << 76  # version
    value &= ~(0x3 << 62)
    value |= 0x2 << 62  # RFC 4122 variant
    return uuid.UUID(int=value)
