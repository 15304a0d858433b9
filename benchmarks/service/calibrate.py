"""How fast this machine is, measured at idle before the load, so runs on different machines can be
told apart from changes in the code.

Machines of one kind here differ: the same code's 50-client POST p99 was 71.3 ms on one and under
30 ms on another (the history of benchmarks/results/service.md, commits 0ace6d8 and the run after
it). These figures put a number on the machine beside the result: Python work of the kind the API
does (validating and serialising a forget-request body), a Postgres round trip, and an insert +
COMMIT (a WAL flush to disk), each the median of many, in ms.
"""

from __future__ import annotations

import json
import time
from statistics import median

import psycopg
from pydantic import TypeAdapter

from app.forget_requests.schemas import ForgetRequestCreate

REQUEST = TypeAdapter(ForgetRequestCreate)  # what FastAPI validates a POST body with

BODY = {
    "request_id": "calibration-0001",
    "model_id": "0190b5d2-8a6c-7c3e-9d2a-1f2e3d4c5b6a",
    "scope": {"sample_ids": [f"digits-{i:04d}" for i in range(10)]},
    "method": "finetune",
    "params": {"epochs": 1},
    "on_verification_failure": "accept",  # as benchmarks/service/load.py sends
}


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return median(times) * 1000


def _python_work() -> None:
    """5,000 validations and serialisations of a request body, a part of what the API does per POST
    in Python."""
    for _ in range(5000):
        json.dumps(REQUEST.validate_python(BODY).model_dump(mode="json"))


def measure(dsn: str) -> dict[str, float]:
    """The machine's figures (ms): ``python_ms`` for :func:`_python_work` (median of 5),
    ``pg_round_trip_ms`` for ``SELECT 1`` (median of 500), ``pg_commit_ms`` for a one-row insert and
    its COMMIT (median of 200, in a table dropped afterwards)."""
    out = {"python_ms": _median_ms(_python_work, 5)}
    with psycopg.connect(dsn) as conn:
        conn.autocommit = True
        out["pg_round_trip_ms"] = _median_ms(lambda: conn.execute("SELECT 1"), 500)
        conn.execute("CREATE TABLE calibration_commits (n int)")
        conn.autocommit = False

        def insert_and_commit() -> None:
            conn.execute("INSERT INTO calibration_commits VALUES (1)")
            conn.commit()

        out["pg_commit_ms"] = _median_ms(insert_and_commit, 200)
        conn.autocommit = True
        conn.execute("DROP TABLE calibration_commits")
    return out
