"""Runs the service benchmark and writes benchmarks/results/service.{md,json,png}."""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np

from app.datasets.builtin import digits_arrays
from benchmarks.forgetting.report import machine
from benchmarks.service import load
from benchmarks.service.stack import Stack

RESULTS = Path(__file__).resolve().parents[1] / "results"
log = logging.getLogger("benchmarks.service")
TINY_MODEL = {
    "architecture": "mlp",
    "config": {"hidden": [32]},
    "recipe": {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "epochs": 2, "batch_size": 64, "seed": 0},
}


def _wait(client: httpx.Client, path: str, done, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).json()
        if done(body):
            return body
        time.sleep(0.5)
    raise TimeoutError(path)


def _setup(url: str) -> tuple[str, list[str]]:
    with httpx.Client(base_url=url, timeout=60) as client:
        ds = client.post("/v1/datasets", data={"builtin": "digits"}).json()
        model = client.post("/v1/models", json={"name": "bench-tiny", "dataset_id": ds["id"], **TINY_MODEL}).json()
        _wait(client, f"/v1/jobs/{model['training_job_id']}", lambda j: j["state"] == "SUCCEEDED", 120)
    d = digits_arrays()
    return model["id"], d["ids"][d["split"] == "train"].tolist()


def _pct(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q) * 1000) if values else None


def _drain(url: str, model_id: str, request_ids: list[str], timeout: float) -> tuple[dict[str, int], list[dict]]:
    """Wait until no job of the model is queued or running, then account for every accepted request."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=60) as client:
        while time.monotonic() < deadline:
            busy = [
                client.get("/v1/jobs", params={"model_id": model_id, "state": state, "page_size": 1}).json()
                for state in ("QUEUED", "RUNNING", "VERIFYING")
            ]
            if not any(page["items"] for page in busy):
                break
            time.sleep(2)
        found: dict[str, dict] = {}
        token = None
        while True:
            params = {"model_id": model_id, "page_size": 500, **({"page_token": token} if token else {})}
            page = client.get("/v1/forget-requests", params=params).json()
            found.update({fr["id"]: fr for fr in page["items"]})
            token = page["next_page_token"]
            if not token:
                break
    counts: dict[str, int] = {}
    for rid in request_ids:
        state = found[rid]["state"] if rid in found else "MISSING"
        counts[state] = counts.get(state, 0) + 1
    jobs = [found[rid]["jobs"][0] for rid in request_ids[-200:] if rid in found]
    return counts, jobs


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.service", description=__doc__)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--duration", type=float, default=20, help="seconds per paced level")
    parser.add_argument("--burst", type=int, default=1000, help="requests in the burst phase (from 50 clients)")
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stack = Stack(api_workers=args.api_workers)
    try:
        model_id, samples = _setup(stack.url)
        levels = []
        all_accepted: list[str] = []
        for clients in args.clients:
            obs = asyncio.run(load.run(stack.url, model_id, samples, clients, "paced", duration_s=args.duration))
            all_accepted += obs.accepted
            levels.append(_level("paced", clients, obs))
            log.info("paced %d clients: %s", clients, levels[-1])
        burst_clients = max(args.clients)
        obs = asyncio.run(
            load.run(stack.url, model_id, samples, burst_clients, "burst", per_client=args.burst // burst_clients)
        )
        all_accepted += obs.accepted
        levels.append(_level("burst", burst_clients, obs))
        log.info("burst: %s", levels[-1])
        drain_started = time.perf_counter()
        counts, jobs = _drain(stack.url, model_id, all_accepted, timeout=1800)
        drain_seconds = time.perf_counter() - drain_started
        queue_to_start = [_seconds(j["created_at"], j["started_at"]) for j in jobs if j["started_at"]]
        run_time = [_seconds(j["started_at"], j["finished_at"]) for j in jobs if j["finished_at"] and j["started_at"]]
        paced_e2e = levels[0].get("end_to_end_s")
        summary = {
            "machine": machine(),
            "api_workers": args.api_workers,
            "levels": levels,
            "accepted": len(all_accepted),
            "final_states": counts,
            "drain_seconds": drain_seconds,
            "job_run_seconds": _stats(run_time),
            "queue_to_start_seconds_after_burst": _stats(queue_to_start),
            "end_to_end_seconds_one_client": paced_e2e,
        }
    finally:
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


def _level(mode: str, clients: int, obs: load.Observations) -> dict:
    total = len(obs.post) + len(obs.get)
    return {
        "mode": mode,
        "clients": clients,
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
    }
