"""The client: ``Client(url, key)`` and its resource groups, plus :meth:`Client.wait`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from unlearnd_client.errors import WaitTimeout
from unlearnd_client.progress import Polling, ProgressSource, change_key
from unlearnd_client.resources.audit import Audit
from unlearnd_client.resources.certificates import Certificates
from unlearnd_client.resources.datasets import Datasets
from unlearnd_client.resources.forget_requests import ForgetRequests
from unlearnd_client.resources.jobs import Jobs
from unlearnd_client.resources.models import Models
from unlearnd_client.retry import RetryPolicy
from unlearnd_client.schemas import ForgetRequest
from unlearnd_client.transport import Transport

DEFAULT_URL = "http://127.0.0.1:8000"  # where `make run` serves


class Client:
    """``url`` and ``key`` default to ``UNLEARND_URL`` and ``UNLEARND_KEY``. ``transport`` is an httpx
    transport to send through (a proxy's, a test's); ``progress`` replaces polling in :meth:`wait`."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        progress: ProgressSource | None = None,
    ):
        url = url or os.environ.get("UNLEARND_URL") or DEFAULT_URL
        key = key or os.environ.get("UNLEARND_KEY")
        self.transport = Transport(url, key, timeout=timeout, retry=retry, transport=transport)
        self.datasets = Datasets(self.transport)
        self.models = Models(self.transport)
        self.forget_requests = ForgetRequests(self.transport)
        self.jobs = Jobs(self.transport)
        self.certificates = Certificates(self.transport)
        self.audit = Audit(self.transport, self.certificates.public_keys)
        self.progress = progress or Polling(self.forget_requests.get)

    @property
    def url(self) -> str:
        return self.transport.base_url

    def wait(
        self,
        forget_request_id: str,
        *,
        timeout_s: float | None = None,
        on_progress: Callable[[ForgetRequest], Any] | None = None,
    ) -> ForgetRequest:
        """Follow the request until it is SUCCEEDED, FAILED or CANCELLED and return that final state
        (``.outcome`` says completed, unverified, failed or cancelled). ``on_progress`` gets each
        snapshot that differs from the one before (state, method, phase, step). Raises
        :class:`WaitTimeout` after ``timeout_s`` seconds; the request goes on regardless."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        last_key: tuple | None = None
        snapshot: ForgetRequest | None = None
        for snapshot in self.progress.follow(forget_request_id):
            key = change_key(snapshot)
            if on_progress is not None and key != last_key:
                on_progress(snapshot)
            last_key = key
            if snapshot.finished:
                return snapshot
            if deadline is not None and time.monotonic() >= deadline:
                break
        raise WaitTimeout(forget_request_id, snapshot)

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
