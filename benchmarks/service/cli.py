"""Runs the service benchmark and writes benchmarks/results/service.{md,json,png}."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

from app.datasets.builtin import digits_arrays
from benchmarks.forgetting.report import machine
from benchmarks.service import calibrate, load
from benchmarks.service.stack import Stack

RESULTS = Path(__file__).resolve().parents[1] / "results"
log = logging.getLogger("benchmarks.service")
TINY_MODEL = {
    "architecture": "mlp",
    "config": {"hidden": [32]},
    "recipe": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 2, "batch_size": 64, "seed": 0},
}


def wait_until(client: httpx.Client, path: str, done, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise TimeoutError(path)


def _setup(client: httpx.Client) -> tuple[str, list[str]]:
    ds = client.post("/v1/datasets", data={"builtin": "digits"}).json()
    model = client.post("/v1/models", json={"name": "bench-tiny", "dataset_id": ds["id"], **TINY_MODEL}).json()
    wait_until(client, f"/v1/jobs/{model['training_job_id']}", lambda j: j["state"] == "SUCCEEDED", 120)
    d = digits_arrays()
    return model["id"], d["ids"][d["split"] == "train"].tolist()


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q) * 1000) if values else None


def _wait_idle(client: httpx.Client, model_id: str, timeout: float) -> None:
    """Until no job of the model is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [
            client.get("/v1/jobs", params={"model_id": model_id, "state": state, "page_size": 1}).json()
            for state in ("QUEUED", "RUNNING", "VERIFYING")
        ]
        if not any(page["items"] for page in busy):
            return
        time.sleep(2)


def _requests_of(client: httpx.Client, model_id: str) -> dict[str, dict]:
    """Every forget request of the model, by id."""
    found: dict[str, dict] = {}
    token = None
    while True:
        params = {"model_id": model_id, "page_size": 500, **({"page_token": token} if token else {})}
        page = client.get("/v1/forget-requests", params=params).json()
        found.update({fr["id"]: fr for fr in page["items"]})
        token = page["next_page_token"]
        if not token:
            return found


def _seconds(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _server_side(level: dict, accepted: list[str], found: dict[str, dict]) -> None:
    """Per level, from the service's own timestamps: what became of every accepted request, how long
    its job waited in the queue, how long it ran, and received -> SUCCEEDED."""
    states = Counter(found[rid]["state"] if rid in found else "MISSING" for rid in accepted)
    queue, run, e2e = [], [], []
    for rid in accepted:
        fr = found.get(rid)
        if not fr or not fr["jobs"]:
            continue
        job = fr["jobs"][0]
        queue.append(_seconds(job["created_at"], job["started_at"]))
        run.append(_seconds(job["started_at"], job["finished_at"]))
        e2e.append(_seconds(fr["received_at"], job["finished_at"]))
    level["final_states"] = dict(states)
    level["queue_to_start_s"] = _stats([v for v in queue if v is not None])
    level["job_run_s"] = _stats([v for v in run if v is not None])
    level["end_to_end_s"] = _stats([v for v in e2e if v is not None])


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--duration", type=float, default=30, help="seconds per paced level")
    parser.add_argument("--ramp", type=float, default=5, help="seconds over which the paced clients join")
    parser.add_argument("--burst", type=int, default=1000, help="requests in the burst phase (from the most clients)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per paced level (one run's p99 moves by ~50 ms between runs)"
    )
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the stack (A/B runs)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the summary
    started = time.perf_counter()
    stack = Stack(api_workers=args.api_workers, extra_env=dict(item.split("=", 1) for item in args.env))
    client = httpx.Client(base_url=stack.url, timeout=60, headers=stack.headers)
    try:
        speed = calibrate.measure(stack.dsn)  # before the model trains: the worker is idle
        log.info("machine speed at idle: %s", speed)
        model_id, samples = _setup(client)
        runs: list[tuple[dict, list[str]]] = []
        for clients in args.clients:
            for repeat in range(1, args.repeats + 1):
                obs = asyncio.run(
                    load.run(
                        stack.url,
                        model_id,
                        samples,
                        clients,
                        "paced",
                        duration_s=args.duration,
                        ramp_s=args.ramp,
                        headers=stack.headers,
                    )
                )
                runs.append((_level("paced", clients, obs, repeat), obs.accepted))
                log.info("paced %d clients, run %d: %s", clients, repeat, runs[-1][0])
                # the next run starts on an empty queue: what a run left behind is not its successor's
                _wait_idle(client, model_id, timeout=600)
        burst_clients = max(args.clients)
        obs = asyncio.run(
            load.run(
                stack.url,
                model_id,
                samples,
                burst_clients,
                "burst",
                per_client=args.burst // burst_clients,
                headers=stack.headers,
            )
        )
        runs.append((_level("burst", burst_clients, obs, 1), obs.accepted))
        log.info("burst: %s", runs[-1][0])
        drain_started = time.perf_counter()
        _wait_idle(client, model_id, timeout=1800)
        drain_seconds = time.perf_counter() - drain_started
        found = _requests_of(client, model_id)
        # every request the model has is one a client was answered 202 for: retries added none
        extra_requests = len(set(found) - {rid for _, accepted in runs for rid in accepted})
        for level, accepted in runs:
            _server_side(level, accepted, found)
        levels = [level for level, _ in runs]
        summary = {
            "machine": machine(),
            "machine_speed_ms": speed,
            "api_workers": args.api_workers,
            "settings": dict(item.split("=", 1) for item in args.env),
            "paced_seconds": args.duration,
            "ramp_seconds": args.ramp,
            "repeats": args.repeats,
            "levels": levels,
            "accepted": sum(len(accepted) for _, accepted in runs),
            "lost": sum(level["final_states"].get("MISSING", 0) for level in levels),
            "requests_not_accepted_by_any_client": extra_requests,
            "burst_drain_seconds": drain_seconds,
            "wall_seconds": time.perf_counter() - started,
        }
    finally:
        client.close()
        stack.close()
    from benchmarks.service.report import write

    write(summary, args.out)
    return summary


def _stats(values: list[float]) -> dict | None:
    if not values:
        return None
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "mean": float(np.mean(values)),
        "n": len(values),
    }


def _level(mode: str, clients: int, obs: load.Observations, run: int) -> dict:
    total = len(obs.post) + len(obs.get)
    return {
        "mode": mode,
        "clients": clients,
        "run": run,
        "posts": len(obs.post),
        "gets": len(obs.get),
        "accepted": len(obs.accepted),
        "errors": len(obs.errors),
        "error_kinds": sorted(set(obs.errors)),
        "seconds": obs.elapsed,
        "requests_per_s": total / obs.elapsed if obs.elapsed else None,
        "accepted_per_s": len(obs.accepted) / obs.elapsed if obs.elapsed else None,
        "post_p50_ms": _pct(obs.post, 50),
        "post_p99_ms": _pct(obs.post, 99),
        "get_p50_ms": _pct(obs.get, 50),
        "get_p99_ms": _pct(obs.get, 99),
        "post_server_p50_ms": _pct(obs.post_server, 50),
        "post_server_p99_ms": _pct(obs.post_server, 99),
        "get_server_p50_ms": _pct(obs.get_server, 50),
        "get_server_p99_ms": _pct(obs.get_server, 99),
        "retries": obs.retries,
        "retries_not_replayed": obs.retries_not_replayed,
        "transport_retries": obs.transport_retries,
    }
