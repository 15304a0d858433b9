"""Clients that behave like a privacy pipeline: POST a forget request, then poll it until it is done.

``paced``: each client POSTs one request and polls it (every ``poll_s``) until it ends, then the
next, for ``duration_s``: the request rate follows what the worker can do, as in production. The
clients join one by one over the first ``ramp_s`` seconds (counted in the figures).
``burst``: each client POSTs its requests back to back without waiting: the API alone, saturated.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field

import httpx

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@dataclass
class Observations:
    post: list[float] = field(default_factory=list)  # seconds
    get: list[float] = field(default_factory=list)
    post_server: list[float] = field(default_factory=list)  # seconds, from the Server-Timing header
    get_server: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # forget-request ids answered 202
    elapsed: float = 0.0


def _body(model_id: str, sample_id: str) -> dict:
    return {
        "request_id": f"bench-{uuid.uuid4().hex}",
        "model_id": model_id,
        "scope": {"sample_ids": [sample_id]},
        "method": "finetune",
        "params": {"epochs": 1},
    }


def _server_seconds(resp: httpx.Response) -> float:
    """The API's own time for the request (``Server-Timing: app;dur=<ms>``)."""
    return float(resp.headers["server-timing"].partition("dur=")[2]) / 1000


async def _post(client: httpx.AsyncClient, body: dict, obs: Observations) -> str | None:
    started = time.perf_counter()
    try:
        resp = await client.post("/v1/forget-requests", json=body, headers={"Idempotency-Key": body["request_id"]})
    except httpx.HTTPError as exc:
        obs.errors.append(f"POST {type(exc).__name__}")
        return None
    obs.post.append(time.perf_counter() - started)
    obs.post_server.append(_server_seconds(resp))
    if resp.status_code != 202:
        obs.errors.append(f"POST {resp.status_code}")
        return None
    obs.accepted.append(resp.json()["id"])
    return obs.accepted[-1]


async def _get(client: httpx.AsyncClient, request_id: str, obs: Observations) -> str | None:
    started = time.perf_counter()
    try:
        resp = await client.get(f"/v1/forget-requests/{request_id}")
    except httpx.HTTPError as exc:
        obs.errors.append(f"GET {type(exc).__name__}")
        return None
    obs.get.append(time.perf_counter() - started)
    obs.get_server.append(_server_seconds(resp))
    if resp.status_code != 200:
        obs.errors.append(f"GET {resp.status_code}")
        return None
    return resp.json()["state"]


async def _paced_client(client, model_id, samples, start_s, deadline, poll_s, obs) -> None:
    await asyncio.sleep(start_s)
    while time.monotonic() < deadline:
        request_id = await _post(client, _body(model_id, random.choice(samples)), obs)
        if request_id is None:
            await asyncio.sleep(poll_s)
            continue
        while time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
            if await _get(client, request_id, obs) in TERMINAL:
                break


async def _burst_client(client, model_id, samples, count, obs) -> None:
    for _ in range(count):
        await _post(client, _body(model_id, random.choice(samples)), obs)


async def run(
    url: str,
    model_id: str,
    samples: list[str],
    clients: int,
    mode: str,
    duration_s: float = 20,
    per_client: int = 20,
    poll_s: float = 0.5,
    ramp_s: float = 5.0,
) -> Observations:
    obs = Observations()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        started = time.perf_counter()
        if mode == "paced":
            deadline = time.monotonic() + duration_s
            # Pipelines are not synchronised: client i joins at i/clients of the ramp, then keeps going.
            jobs = [
                _paced_client(client, model_id, samples, ramp_s * i / clients, deadline, poll_s, obs)
                for i in range(clients)
            ]
        else:
            jobs = [_burst_client(client, model_id, samples, per_client, obs) for _ in range(clients)]
        await asyncio.gather(*jobs)
        obs.elapsed = time.perf_counter() - started
    return obs
