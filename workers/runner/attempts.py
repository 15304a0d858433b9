"""An unlearn job's attempts: run a method, verify its model, and either keep it or try the next.

The plan is one method (explicit, ``on_verification_failure: fail`` or ``accept``), an explicit method
followed by ``auto``'s plan (``escalate``), or ``auto``'s plan (workers/engine/verification/plan.py).
Each attempt starts from the source model; a method that refuses (a missing update log, an
incomplete one) or whose model fails verification hands over to the next. The first model that
passes is kept (``verified``; ``exact`` for retrain, which is correct by construction and whose
tests are reported, not required). When the last one fails: with ``accept`` its model is kept as
``unverified``, otherwise :class:`VerificationFailed` carries the failed tests and every attempt's
metrics, and no version is made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from app.jobs.tables import Job
from app.settings import get_settings
from workers.engine.holdout import RULE
from workers.engine.methods import UnlearningTask
from workers.engine.update_log import UpdateLogReader
from workers.engine.verification import gate
from workers.engine.verification.attempts import AttemptHooks, brief, first_verified, summary
from workers.engine.verification.plan import AUTO, RETRAIN, LogFacts, Planned, escalation, plan
from workers.engine.verification.policy import ON_FAILURE_DEFAULT, VerificationPolicy, effective

# verifying(): RUNNING -> VERIFYING (raises Cancelled if a cancel arrived); escalating(): record the
# failed attempt and go on (-> RUNNING)
Hooks = AttemptHooks


class VerificationFailed(Exception):
    def __init__(self, detail: str, method: str, failed_tests: list[dict[str, Any]], metrics: dict[str, Any]):
        super().__init__(detail)
        self.method = method
        self.failed_tests = failed_tests
        self.metrics = metrics


@dataclass
class Verified:
    model: nn.Module
    metrics: dict[str, Any]
    consumed_steps: list[int]


def job_plan(
    job: Job,
    *,
    scope: str,
    kind: str,
    log: UpdateLogReader | None,
    forget_rows: int,
    reference_rows: int,
    policy: VerificationPolicy,
    data_gone: int = 0,
) -> tuple[list[Planned], list[str]]:
    """``data_gone``: samples to forget whose rows an earlier erasure removed from the stored dataset;
    only retrain, which needs no forget data, can serve them."""

    def auto() -> tuple[list[Planned], list[str]]:
        if data_gone:
            gone = f"the data of {data_gone} of the samples to forget already left the stored dataset"
            return [RETRAIN], [f"{gone}: retrain (exact), which needs none, only"]
        return plan(
            scope=scope,
            kind=kind,
            log=_log_facts(log),
            forget_rows=forget_rows,
            reference_rows=reference_rows,
            policy=policy,
        )

    if job.method == AUTO:
        return auto()
    explicit = Planned(job.method, job.params or {})
    if on_failure(job) == "escalate":
        steps, notes = auto()
        return escalation(explicit, steps), notes
    return [explicit], []


def on_failure(job: Job) -> str:
    return "escalate" if job.method == AUTO else (job.on_verification_failure or ON_FAILURE_DEFAULT)


def job_policy(job: Job) -> VerificationPolicy:
    return effective(get_settings().verification, job.verification)


def _log_facts(log: UpdateLogReader | None) -> LogFacts | None:
    if log is None:
        return None
    return LogFacts(mode=log.config.mode, first_epoch_gradients=bool(log.config.first_epoch_gradients))


def run_attempts(
    job: Job,
    steps: list[Planned],
    notes: list[str],
    *,
    source: nn.Module,
    new_task: Callable[[nn.Module], UnlearningTask],
    measure: Callable[[nn.Module], dict[str, Any]],
    data: gate.GateData,
    policy: VerificationPolicy,
    hooks: Hooks,
    roles: dict[str, int],
) -> Verified:
    before = measure(source)
    outcome = first_verified(
        steps,
        source=source,
        new_task=new_task,
        data=data,
        policy=policy,
        baseline=gate.source_utility(source, data),
        accept_last=on_failure(job) == "accept",
        hooks=hooks,
    )
    step, verdict, attempts = outcome.step, outcome.verdict, outcome.attempts
    if outcome.model is not None:
        metrics = measure(outcome.model)
        metrics.update(before=before, **outcome.task.extra_metrics)
        metrics.update(
            _evidence(step, outcome.guarantee, verdict, attempts, policy, job, notes, roles), method_used=step.method
        )
        return Verified(outcome.model, metrics, outcome.task.consumed_log_steps)
    failed = [brief(t) for t in verdict["tests"] if t["passed"] is False]
    metrics = {"before": before, **_evidence(step, None, verdict, attempts, policy, job, notes, roles)}
    names = ", ".join(f"{t['name']} ({_said(t)})" for t in failed)
    raise VerificationFailed(f"{step.method}'s model failed verification: {names}", step.method, failed, metrics)


def _evidence(step, guarantee, verdict, attempts, policy, job, notes, roles) -> dict[str, Any]:
    return {
        "verification": {
            "guarantee": guarantee,
            "passed": verdict["passed"],
            "method": step.method,
            "tests": verdict["tests"],
            "policy": policy.model_dump(),
            "policy_change": job.verification,
            "on_verification_failure": on_failure(job),
        },
        "attempts": [summary(a) for a in attempts],
        "plan_notes": notes,
        "holdout_roles": {**roles, "rule": RULE},
    }


def _said(test: dict[str, Any]) -> str:
    if test.get("statistic") is None:
        return test.get("note", "not measurable")
    return f"{test['statistic']} against {test['threshold']}"
