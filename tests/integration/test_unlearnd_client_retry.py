"""The client's retries against a real API process of this module's own (the session's API is left
alone), on the session's database, broker and worker.

1. The API stops after committing a forget request and before its answer reaches the client (the
   answer is dropped at the client's transport at that moment: the one thing staged here), and is
   started again on the same port. The client retries through the refused connections with the same
   Idempotency-Key until the new process answers, and gets the original answer back: one request.
2. The API loses its database connections (what a Postgres restart does to it) and answers a real
   503 with Retry-After; the client waits that long and its retry with the same key is accepted once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from tests.client_support import TEST_RETRY, upload_fast_model
from tests.conftest import ADMIN_DSN, _process_env
from tests.processes import Process, start_api
from tests.services import free_port
from unlearnd_client import Client

pytestmark = pytest.mark.integration
SUBMIT = "/v1/forget-requests"


class RestartableApi:
    """An API process on a fixed port that can be stopped and started again there."""

    def __init__(self, env: dict[str, str], logs):
        self.env, self.logs = env, logs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self.proc: Process = self._start()
        self._restarter: threading.Thread | None = None

    def _start(self) -> Process:
        self.starts += 1
        return start_api(self.env, self.port, self.logs / f"api-{self.starts}.log")

    def stop_then_restart_in_background(self) -> None:
        self.proc.stop()
        self._restarter = threading.Thread(target=self._restart, daemon=True)
        self._restarter.start()

    def _restart(self) -> None:
        self.proc = self._start()

    def join(self) -> None:
        if self._restarter is not None:
            self._restarter.join(timeout=90)

    def stop(self) -> None:
        self.join()
        self.proc.stop()


@dataclass
class Attempt:
    key: str | None
    outcome: int | str  # the status, or the transport error's name
    replayed: bool
    at: float


@dataclass
class RecordingTransport(httpx.BaseTransport):
    """The real HTTP transport, recording every forget-request POST; ``lose_first_answer`` drops the
    first 202 after calling ``on_lost`` (which stops the API), as a crash before the reply would."""

    on_lost: Callable[[], None] | None = None
    inner: httpx.HTTPTransport = field(default_factory=httpx.HTTPTransport)
    attempts: list[Attempt] = field(default_factory=list)
    lost_answer: dict | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        submit = request.method == "POST" and request.url.path == SUBMIT
        key = request.headers.get("Idempotency-Key")
        try:
            response = self.inner.handle_request(request)
        except httpx.TransportError as exc:
            if submit:
                self.attempts.append(Attempt(key, type(exc).__name__, False, time.monotonic()))
            raise
        if not submit:
            return response
        response.read()
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        self.attempts.append(Attempt(key, response.status_code, replayed, time.monotonic()))
        if self.on_lost is not None and self.lost_answer is None and response.status_code == 202:
            self.lost_answer = response.json()
            self.on_lost()
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def app_name() -> str:
    return f"unlearnd-client-retry-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def own_api(stack_env, worker, app_name, tmp_path_factory):
    env = _process_env(stack_env)
    env["UNLEARND_DATABASE_URL"] += f"?application_name={app_name}"  # so its connections can be told apart
    api = RestartableApi(env, tmp_path_factory.mktemp("client-retry-logs"))
    yield api
    api.stop()


@pytest.fixture(scope="module")
def main_sdk(api_url, admin_key):
    with Client(api_url, admin_key, retry=TEST_RETRY) as sdk:
        yield sdk


@pytest.fixture(scope="module")
def model(main_sdk):
    dataset = main_sdk.datasets.add(builtin="digits", name="client-retry-digits")
    return upload_fast_model(main_sdk, dataset.id)


def _submit(sdk: Client, model_id: str, label: int):
    # cheap, and accepted whatever the gate says: the retries are tested here, not the method
    params = {"epochs": 1}
    return sdk.forget_requests.submit(
        model_id, class_labels=[label], method="finetune", params=params, on_verification_failure="accept"
    )


def _requests_with(main_sdk: Client, model_id: str, request_id: str) -> list:
    return [fr for fr in main_sdk.forget_requests.list(model_id=model_id) if fr.request_id == request_id]


def test_a_submit_whose_answer_died_with_the_api_is_retried_into_one_request(own_api, admin_key, main_sdk, model):
    first_pid = own_api.proc.proc.pid
    recorder = RecordingTransport(on_lost=own_api.stop_then_restart_in_background)
    with Client(own_api.url, admin_key, retry=TEST_RETRY, transport=recorder) as sdk:
        submitted = _submit(sdk, model.id, label=1)
    own_api.join()

    assert own_api.starts == 2 and own_api.proc.proc.pid != first_pid  # really another process
    attempts = recorder.attempts
    assert recorder.lost_answer is not None and attempts[0].outcome == 202 and not attempts[0].replayed
    assert {a.key for a in attempts} == {submitted.idempotency_key}  # one key across every retry
    down = [a for a in attempts[1:-1] if not isinstance(a.outcome, int)]
    assert down and all(a.outcome in ("ConnectError", "RemoteProtocolError", "ReadError") for a in down), attempts
    assert attempts[-1].outcome == 202 and attempts[-1].replayed and submitted.replayed
    assert submitted.id == recorder.lost_answer["id"]

    assert [fr.id for fr in _requests_with(main_sdk, model.id, submitted.request_id)] == [submitted.id]
    received = main_sdk.audit.search(forget_request_id=submitted.id, action="forget_request.received")
    assert len(list(received)) == 1
    assert main_sdk.wait(submitted.id, timeout_s=120).state == "SUCCEEDED"


def test_a_503_is_retried_after_its_retry_after(own_api, admin_key, main_sdk, model, app_name):
    recorder = RecordingTransport()
    with Client(own_api.url, admin_key, retry=TEST_RETRY, transport=recorder) as sdk:
        sdk.models.get(model.id)  # the API's pool now holds connections, which the next lines kill
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            killed = conn.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s) AS t",
                (app_name,),
            ).fetchone()[0]
        assert killed >= 1
        submitted = _submit(sdk, model.id, label=2)

    outcomes = [a.outcome for a in recorder.attempts]
    assert outcomes == [503, 202], recorder.attempts
    assert recorder.attempts[0].key == recorder.attempts[1].key == submitted.idempotency_key
    waited = recorder.attempts[1].at - recorder.attempts[0].at
    assert 4.5 <= waited < 15, waited  # the API's Retry-After: 5, not the 0.2 s backoff
    assert [fr.id for fr in _requests_with(main_sdk, model.id, submitted.request_id)] == [submitted.id]
    assert main_sdk.wait(submitted.id, timeout_s=120).state == "SUCCEEDED"
