"""Following a forget request until it finishes.

:class:`ProgressSource` is the seam: :class:`Polling` asks ``GET /v1/forget-requests/{id}`` again and
again; a server-sent-events source (once the API has that endpoint) yields the same snapshots as
they are pushed, and :meth:`Client.wait` does not change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from unlearnd_client.schemas import ForgetRequest


class ProgressSource(Protocol):
    def follow(self, request_id: str) -> Iterator[ForgetRequest]:
        """Snapshots of the request as they are observed (at least every few seconds while it runs,
        so that a caller can give up on time), the last one final."""
        ...


class Polling:
    """Polls with a growing pause (``interval_s`` doubling up to ``max_interval_s``): quick for a
    short job, light on the API for a long one."""

    def __init__(
        self,
        fetch: Callable[[str], ForgetRequest],
        interval_s: float = 0.5,
        max_interval_s: float = 3.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.fetch = fetch
        self.interval_s = interval_s
        self.max_interval_s = max_interval_s
        self.sleep = sleep

    def follow(self, request_id: str) -> Iterator[ForgetRequest]:
        pause = self.interval_s
        while True:
            snapshot = self.fetch(request_id)
            yield snapshot
            if snapshot.finished:
                return
            self.sleep(pause)
            pause = min(pause * 2, self.max_interval_s)


def change_key(snapshot: ForgetRequest) -> tuple:
    """What a progress display shows; a snapshot equal to the previous one under it is not news."""
    job = snapshot.job
    if job is None:
        return (snapshot.state,)
    return (snapshot.state, job.state, job.attempt, job.method, job.progress.phase, job.progress.step)
