"""The API's sync endpoints share anyio's thread pool, limited to ``UNLEARND_API_THREADS`` (2 by
default): a slow submit holds one thread, and polls keep being answered on the other."""

from __future__ import annotations

import threading
import time

import httpx

from app.settings import get_settings
from tests.helpers import assert_problem, forget, train_ids


def test_a_slow_submit_does_not_hold_up_polls(api_url, client, model):
    assert get_settings().api_threads == 2  # the shipped default
    created = forget(client, model["id"], {"sample_ids": train_ids(label=5, n=1)}, method="finetune")
    assert created.status_code == 202
    poll_path = created.headers["location"]
    # 100,000 IDs that are not in the dataset: read and refused, the slowest submit there is
    ids = [f"no-such-sample-{i}" for i in range(get_settings().max_ids_per_request)]
    slow: dict = {}

    def submit() -> None:
        started = time.monotonic()
        with httpx.Client(base_url=api_url, headers=client.headers, timeout=120) as own:
            slow["resp"] = own.post(
                "/v1/forget-requests",
                json={
                    "request_id": "slow-submit",
                    "model_id": model["id"],
                    "scope": {"sample_ids": ids},
                    "method": "finetune",
                },
            )
        slow["seconds"], slow["ended"] = time.monotonic() - started, time.monotonic()

    thread = threading.Thread(target=submit)
    thread.start()
    polls: list[tuple[float, float]] = []  # (ended at, seconds)
    while thread.is_alive() and len(polls) < 200:
        started = time.monotonic()
        assert client.get(poll_path).status_code == 200
        polls.append((time.monotonic(), time.monotonic() - started))
    thread.join(timeout=120)
    assert_problem(slow["resp"], 422, "unknown-sample-ids")
    during = [seconds for ended, seconds in polls if ended < slow["ended"]]
    # polls went on while the submit ran, each far quicker than the submit itself
    assert len(during) >= 3, (slow["seconds"], polls)
    assert max(during) < max(1.0, slow["seconds"] / 2), (slow["seconds"], during)
