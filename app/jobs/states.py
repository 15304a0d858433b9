"""Job states and the one function that moves a job between them.

QUEUED -> RUNNING -> VERIFYING -> SUCCEEDED | FAILED;  RUNNING -> CANCELLING -> CANCELLED.
Edges the design card leaves implicit: a QUEUED job is cancelled at once (no worker holds it), a
RUNNING job whose worker vanished (lease expired) goes back to QUEUED for another attempt, and an
unlearn job whose result failed verification goes from VERIFYING back to RUNNING when it escalates
to the next method of its plan (workers/runner/attempts.py).
"""

from __future__ import annotations

from typing import Literal, get_args

JobState = Literal["QUEUED", "RUNNING", "VERIFYING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED"]

QUEUED = "QUEUED"
RUNNING = "RUNNING"
VERIFYING = "VERIFYING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
CANCELLING = "CANCELLING"
CANCELLED = "CANCELLED"

STATES: tuple[str, ...] = get_args(JobState)
TERMINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
# states that hold the model: at most one job per model is in one of these (a unique index says so)
ACTIVE = (RUNNING, VERIFYING, CANCELLING)

ALLOWED: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED, FAILED}),
    RUNNING: frozenset({VERIFYING, CANCELLING, FAILED, QUEUED}),
    VERIFYING: frozenset({SUCCEEDED, FAILED, QUEUED, RUNNING}),
    CANCELLING: frozenset({CANCELLED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    pass


def check_transition(current: str, target: str) -> None:
    if target not in ALLOWED[current]:
        raise IllegalTransition(f"a job cannot go from {current} to {target}")
