"""Clients that behave like a privacy pipeline: POST a forget request, then poll it until it is done.

``paced``: each client POSTs one request and polls it (every ``poll_s``) until it ends, then the
next, for ``duration_s``: the request rate follows what the worker can do, as in production. The
clients join one by one over the first ``ramp_s`` seconds (counted in the figures).
``burst``: each client POSTs its requests back to back without waiting: the API alone, saturated.
Every request is sent twice with the same Idempotency-Key (a client retrying after a lost answer):
the retry must get the first answer back (``Idempotent-Replayed``), never a second request or job.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    retries: int = 0  # burst: second sends of an accepted request, same Idempotency-Key
    retries_not_replayed: int = 0  # ... answered with another id or without Idempotent-Replayed
    transport_retries: int = 0  # a broken connection retried once with the same Idempotency-Key
    elapsed: float = 0.0


def _body(model_id: str, sample_id: str) -> dict:
    return {
        "request_id": f"bench-{uuid.uuid4().hex}",
        "model_id": model_id,
        "scope": {"sample_ids": [sample_id]},
        "method": "finetune",
        "params": {"epochs": 1},
        # the load, not the gate, is measured: a one-sample request can never pass the membership test
        "on_verification_failure": "accept",
    }


def _server_seconds(resp: httpx.Response) -> float:
    """The API's own time for the request (``Server-Timing: app;dur=<ms>``)."""
    return float(resp.headers["server-timing"].partition("dur=")[2].partition(",")[0]) / 1000


async def _send(client: httpx.AsyncClient, body: dict, obs: Observations) -> httpx.Response:
    """POST with the request's Idempotency-Key; a connection that broke before the answer (a reset
    keep-alive connection under load) is retried once with the same key, as a client should: the
    key makes the retry safe, and the retries check of the burst proves it is."""
    headers = {"Idempotency-Key": body["request_id"]}
    try:
        return await client.post("/v1/forget-requests", json=body, headers=headers)
    except httpx.TransportError:
        obs.transport_retries += 1
        return await client.post("/v1/forget-requests", json=body, headers=headers)


async def _post(client: httpx.AsyncClient, body: dict, obs: Observations) -> str | None:
    started = time.perf_counter()
    try:
        resp = await _send(client, body, obs)
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
        body = _body(model_id, random.choice(samples))
        first = await _post(client, body, obs)
        if first is not None:
            await _retry(client, body, first, obs)


async def _retry(client: httpx.AsyncClient, body: dict, first_id: str, obs: Observations) -> None:
    """Not counted in the POST latencies: a replay is a lookup, the figures are for new requests."""
    obs.retries += 1
    try:
        resp = await _send(client, body, obs)
    except httpx.HTTPError as exc:
        obs.errors.append(f"retry {type(exc).__name__}")
        return
    replayed = resp.status_code == 202 and resp.headers.get("idempotent-replayed") == "true"
    if not replayed or resp.json()["id"] != first_id:
        obs.retries_not_replayed += 1


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
    headers: dict[str, str] | None = None,
) -> Observations:
    obs = Observations()
    # Each client has an HTTP client and a connection of its own, as independent pipelines do. (One
    # shared httpx pool of 50 connections made requests wait inside the load generator: up to 0.6 s
    # between send() and the request's first byte on the wire, measured, counted as API latency.)
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        own = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60, limits=limits, headers=headers))
            for _ in range(clients)
        ]
        started = time.perf_counter()
        if mode == "paced":
            deadline = time.monotonic() + duration_s
            # Pipelines are not synchronised: client i joins at i/clients of the ramp, then keeps going.
            jobs = [
                _paced_client(own[i], model_id, samples, ramp_s * i / clients, deadline, poll_s, obs)
                for i in range(clients)
            ]
        else:
            jobs = [_burst_client(own[i], model_id, samples, per_client, obs) for i in range(clients)]
        await asyncio.gather(*jobs)
        obs.elapsed = time.perf_counter() - started
    return obs
