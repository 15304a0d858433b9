"""Worker heartbeats: each worker node says "alive, running job X" under a key that expires.

Redis with a TTL (no table, no migration, nothing to clean up): a worker that dies simply stops
renewing its key, which is gone three intervals later. The embedded mode has no Redis; its one
process keeps the beats in memory, which no other process can see, so ``shared`` is False there and
the reconciler does not treat a missing beat as a lost worker.
"""

from __future__ import annotations

import json
import re
import threading
import time
from functools import lru_cache
from typing import Any, Protocol

import redis

from app.core.redis_client import redis_client
from app.settings import get_settings

TTL_INTERVALS = 3  # a beat outlives two missed renewals


def ttl_seconds() -> float:
    return TTL_INTERVALS * get_settings().worker_heartbeat_interval_s


class HeartbeatStore(Protocol):
    shared: bool  # every process sees the same beats

    def put(self, name: str, beat: dict[str, Any], ttl_s: float) -> None: ...

    def remove(self, name: str) -> None: ...

    def alive(self) -> list[dict[str, Any]]: ...


class RedisHeartbeats:
    shared = True

    def __init__(self, client: redis.Redis, prefix: str):
        self.client = client
        self.prefix = prefix

    def put(self, name: str, beat: dict[str, Any], ttl_s: float) -> None:
        self.client.set(self.prefix + name, json.dumps(beat), px=max(1, int(ttl_s * 1000)))

    def remove(self, name: str) -> None:
        self.client.delete(self.prefix + name)

    def alive(self) -> list[dict[str, Any]]:
        # SCAN, not KEYS: a handful of workers, but never block Redis for the broker's sake
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.prefix) + "*"
        keys = list(self.client.scan_iter(match=pattern, count=200))
        values = self.client.mget(keys) if keys else []
        return [json.loads(v) for v in values if v]  # a key may expire between SCAN and MGET


class MemoryHeartbeats:
    shared = False

    def __init__(self):
        self._beats: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def put(self, name: str, beat: dict[str, Any], ttl_s: float) -> None:
        with self._lock:
            self._beats[name] = (time.monotonic() + ttl_s, beat)

    def remove(self, name: str) -> None:
        with self._lock:
            self._beats.pop(name, None)

    def alive(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        with self._lock:
            return [beat for expires, beat in self._beats.values() if expires > now]


@lru_cache
def _store(redis_url: str, prefix: str) -> HeartbeatStore:
    return RedisHeartbeats(redis_client(redis_url), prefix) if redis_url else MemoryHeartbeats()


def get_heartbeat_store() -> HeartbeatStore:
    """The store for the current settings; beats are namespaced by queue, as deployments are."""
    settings = get_settings()
    return _store(settings.effective_redis_url, f"unlearnd:{settings.queue_name}:worker:")
