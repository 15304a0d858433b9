"""One Redis client per URL and process (redis-py pools its connections), with short timeouts: a
probe, a heartbeat or a metrics scrape must not hang on an unreachable Redis."""

from __future__ import annotations

from functools import lru_cache

import redis


@lru_cache
def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
