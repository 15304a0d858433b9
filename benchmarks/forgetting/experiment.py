"""One seed of the benchmark: train the original with update logs, then every scenario's rows.

Every row's model goes through the service's gate (default policy). ``original`` and ``retrain``
are gated too: the gate's own quality (it should fail an untouched model that membership inference
tells apart from a retrained one, and pass retrained models). ``auto`` runs the service's plan
(workers/engine/verification/plan.py) through the same attempt loop as a job
(workers/engine/verification/attempts.py); its time is to a verified erasure, every attempt and
its verification included.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.forgetting.profiles import Profile, Row
from benchmarks.forgetting.runs import SeedRun, Sets, gate_fields
from benchmarks.forgetting.scenarios import Scenario, build
from workers.engine.datasets import ArrayDataset
from workers.engine.metrics import gaps
from workers.engine.runtime import TrainingDiverged
from workers.engine.verification.attempts import first_verified
from workers.engine.verification.plan import LogFacts, plan

log = logging.getLogger("benchmarks.forgetting")


class Experiment(SeedRun):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._retrained: dict[bytes, tuple[nn.Module, dict, float, dict]] = {}
        # A time-bounded run (benchmarks/gpu) sets a time.monotonic() deadline: a row not started by
        # then is left out and listed in ``skipped`` (scenario, label); None: every row runs.
        self.deadline: float | None = None
        self.skipped: list[tuple[str, str]] = []

    def out_of_time(self, scenario: Scenario, label: str) -> bool:
        if self.deadline is None or time.monotonic() < self.deadline:
            return False
        self.skipped.append((scenario.key, label))
        log.info("seed %d %s %-45s skipped: out of time", self.seed, scenario.key, label)
        return True

    # ---- a scenario ---------------------------------------------------------------------------
    def scenario(self, scenario: Scenario) -> list[dict[str, Any]]:
        sets = self.sets(scenario.forget_rows, scenario)
        retrained, reference, retrain_seconds, retrain_gate = self.retrain(scenario, sets)
        rows = [
            self.row(scenario, "original", self.evaluate(self.original, sets), None, retrain_seconds, reference)
            | self.verify(self.original, sets),
            self.row(scenario, "retrain", reference, retrain_seconds, retrain_seconds, reference) | retrain_gate,
        ]
        if scenario.sequential:
            return rows + self.sequential(scenario, reference, retrain_seconds)
        for row in self.profile.rows_for(scenario.scope):
            if self.out_of_time(scenario, row.label):
                continue
            if row.method == "auto":
                rows.append(self.auto(scenario, sets, reference, retrain_seconds, retrain_gate))
                continue
            self.reset_logs()
            try:
                out, seconds, task = self.run(copy.deepcopy(self.original), scenario, row.method, row.params, sets)
            except TrainingDiverged as exc:
                # the service fails such a job (auto moves on to its next method): no model to measure
                rows.append(self.diverged(scenario, row.label, str(exc)))
                log.info("seed %d %s %-45s diverged: %s", self.seed, scenario.key, row.label, exc)
                continue
            metrics = self.evaluate(out, sets)
            rows.append(
                self.row(scenario, row.label, metrics, seconds, retrain_seconds, reference, row, task)
                | self.verify(out, sets)
            )
            log.info("seed %d %s %-45s %.2fs", self.seed, scenario.key, row.label, seconds)
        return rows

    def retrain(self, scenario: Scenario, sets: Sets) -> tuple[nn.Module, dict, float, dict]:
        """The reference: retrained once per forget set (the random and sequential scenarios share it)."""
        key = scenario.forget_rows.tobytes()
        if key not in self._retrained:
            model, seconds, _ = self.run(self.fresh_model(), scenario, "retrain", {}, sets)
            self._retrained[key] = (model, self.evaluate(model, sets), seconds, self.verify(model, sets))
            log.info("seed %d %s retrain %.2fs", self.seed, scenario.key, seconds)
        return self._retrained[key]

    # ---- auto ---------------------------------------------------------------------------------
    def plan(self, scenario: Scenario, sets: Sets):
        config = self.pruned_log.manifest.config
        facts = LogFacts(mode=config.mode, first_epoch_gradients=bool(config.first_epoch_gradients))
        return plan(
            scope=scenario.scope,
            kind="classifier",
            log=facts,
            forget_rows=len(sets.forget),
            reference_rows=len(sets.unseen),
            policy=self.policy,
        )

    def auto(self, scenario: Scenario, sets: Sets, reference: dict, retrain_seconds: float, retrain_gate: dict):
        steps, notes = self.plan(scenario, sets)
        if [s.method for s in steps] == ["retrain"]:
            # the plan is retrain alone: its model is the reference (same retain set, same seed,
            # deterministic on the CPU), so the measured retrain and its gate stand for it
            row = self.row(scenario, "auto", reference, retrain_seconds, retrain_seconds, reference)
            return row | retrain_gate | {"auto_method": "retrain", "auto_attempts": ["retrain"], "plan_notes": notes}
        self.reset_logs()
        started = time.perf_counter()
        outcome = first_verified(
            steps,
            source=self.original,
            new_task=lambda model: self.task(model, scenario, sets, self.pruned_log),
            data=sets.gate,
            policy=self.policy,
            baseline=self.baseline(sets),
        )
        seconds = time.perf_counter() - started
        model = outcome.model
        row = self.row(
            scenario, "auto", self.evaluate(model, sets), seconds, retrain_seconds, reference, task=outcome.task
        )
        log.info("seed %d %s auto -> %s %.2fs", self.seed, scenario.key, outcome.step.method, seconds)
        return (
            row
            | gate_fields(outcome.verdict)
            | {
                "auto_method": _label(outcome.step.method, outcome.step.params),
                "auto_attempts": [f"{_label(a['method'], a['params'])}: {a['outcome']}" for a in outcome.attempts],
                "plan_notes": notes,
            }
        )

    # ---- successive requests ------------------------------------------------------------------
    def sequential(self, scenario: Scenario, reference: dict, retrain_seconds: float) -> list[dict[str, Any]]:
        """Each method serves the requests one after another on the moving model; metrics after each
        cover everything forgotten so far, and the gate judges the last model on all of it.
        Retraining after every request costs one retrain per request: the speed-up is against that
        (requests x the measured retrain)."""
        rows = []
        n = len(scenario.requests)
        for spec in self.profile.rows_for("sequential"):
            if self.out_of_time(scenario, spec.label):
                continue
            if spec.method == "auto":
                rows.append(self.sequential_auto(scenario, reference, retrain_seconds))
                continue
            self.reset_logs()
            model, elapsed, done = copy.deepcopy(self.original), 0.0, np.array([], dtype=np.int64)
            for i, request in enumerate(scenario.requests, start=1):
                done = np.union1d(done, request)
                sets = self.sets(done, scenario)
                request_sets = self.sets(request, scenario, retain_rows=np.setdiff1d(self.train_rows, done))
                try:
                    model, seconds, task = self.run(model, scenario, spec.method, spec.params, request_sets)
                except TrainingDiverged as exc:
                    rows.append(self.diverged(scenario, spec.label, str(exc)) | {"request": n})
                    break
                elapsed += seconds
                reader = self.log_for(spec.method)
                if task.consumed_log_steps and reader is not None:
                    reader.consume(task.consumed_log_steps)
                final = i == n
                row = self.row(
                    scenario,
                    spec.label,
                    self.evaluate(model, sets),
                    elapsed,
                    retrain_seconds * i,
                    reference if final else None,
                    spec,
                    task,
                )
                if final:
                    row |= self.verify(model, sets)
                rows.append(row | {"request": i})
            log.info("seed %d sequential %-45s %.2fs", self.seed, spec.label, elapsed)
        return rows

    def sequential_auto(self, scenario: Scenario, reference: dict, retrain_seconds: float) -> dict[str, Any]:
        """Each request runs its own plan on the moving model. When every plan is retrain alone (parts
        too small for the membership test to verify anything), the last request's retrain is the
        reference model (same retain set, same seed) and each request costs one measured retrain."""
        retained, requests = self.train_rows, []
        for request in scenario.requests:
            retained = np.setdiff1d(retained, request)
            sets = self.sets(request, scenario, retain_rows=retained)
            requests.append((sets, *self.plan(scenario, sets)))
        n = len(requests)
        if all([s.method for s in steps] == ["retrain"] for _, steps, _ in requests):
            _, _, _, retrain_gate = self._retrained[scenario.forget_rows.tobytes()]
            row = self.row(scenario, "auto", reference, retrain_seconds * n, retrain_seconds * n, reference)
            attempts = {"auto_method": "retrain", "auto_attempts": ["retrain"] * n, "plan_notes": requests[0][2]}
            return row | retrain_gate | {"request": n} | attempts
        self.reset_logs()
        model, elapsed, methods = self.original, 0.0, []
        for sets, steps, _ in requests:
            started = time.perf_counter()
            outcome = first_verified(
                steps,
                source=model,
                new_task=lambda m, sets=sets: self.task(m, scenario, sets, self.pruned_log),
                data=sets.gate,
                policy=self.policy,
                baseline=self.baseline(sets, model),
            )
            elapsed += time.perf_counter() - started
            self.pruned_log.consume(outcome.task.consumed_log_steps)
            model = outcome.model
            methods.append(_label(outcome.step.method, outcome.step.params))
        everything = self.sets(scenario.forget_rows, scenario)
        row = self.row(scenario, "auto", self.evaluate(model, everything), elapsed, retrain_seconds * n, reference)
        attempts = {"auto_method": ", ".join(sorted(set(methods))), "auto_attempts": methods}
        return row | self.verify(model, everything) | {"request": n} | attempts

    # ---- a table row --------------------------------------------------------------------------
    def diverged(self, scenario: Scenario, label: str, reason: str) -> dict[str, Any]:
        """A method whose loss became NaN/inf: no metrics, the gate counted as failed (``diverged``)."""
        return {
            "seed": self.seed,
            "scenario": scenario.key,
            "method": label,
            "diverged": reason,
            "gate_passed": False,
            "gate": {"diverged": False},
        }

    def row(
        self,
        scenario: Scenario,
        label: str,
        metrics: dict,
        seconds: float | None,
        retrain_seconds: float,
        reference: dict | None,
        spec: Row | None = None,
        task=None,
    ) -> dict[str, Any]:
        row = {
            "seed": self.seed,
            "scenario": scenario.key,
            "method": label,
            **metrics,
            "seconds": seconds,
            "speedup": (retrain_seconds / seconds) if seconds else None,
            "log_bytes": self.storage_for(spec.method, spec.params) if spec else 0,
            "dense_log_bytes": self.dense_log_bytes,
        }
        if label == "auto":
            row["log_bytes"] = self.storage_for("auto", {})
        if reference is not None:
            row.update(gaps(_pct(metrics), _pct(reference)))
        if task is not None:
            row["log_bytes_read"] = task.extra_metrics.get("update_log_bytes_read")
            row["stop_reason"] = task.extra_metrics.get("stop_reason")
        return row


def _label(method: str, params: dict) -> str:
    return method + (f" ({', '.join(f'{k}={v}' for k, v in params.items())})" if params else "")


def _pct(metrics: dict) -> dict:
    """Gaps are in percentage points."""
    return {k: (v * 100 if isinstance(v, float) else v) for k, v in metrics.items()}


def scenarios_of(profile: Profile, ds: ArrayDataset, seed: int) -> list[Scenario]:
    """The seed's scenarios, only those the profile names if it names some."""
    scenarios = build(
        ds,
        profile.sample_fraction,
        profile.class_samples,
        profile.requests,
        np.random.default_rng(seed),
        profile.class_names,
    )
    if profile.scenarios is None:
        return scenarios
    return [s for s in scenarios if s.key in profile.scenarios]


def seed_summary(run: Experiment, scenarios: list[Scenario], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One seed's record, as the report reads it: ``scenarios`` are those whose rows are in ``rows``."""
    pruned = run.pruned_log.manifest
    return {
        "seed": run.seed,
        "rows": rows,
        "train_seconds": run.train_seconds,
        "original_test_accuracy": run.original_test_accuracy,
        "logs": {
            "dense_bytes": run.dense_log_bytes,
            "pruned_bytes": pruned.stored_bytes,
            "pruned_ratio": pruned.storage_ratio,
            "gradient_bytes": pruned.gradient_bytes,
            "gradient_layers": list(pruned.config.first_epoch_gradients or []),
            "steps": len(pruned.entries),
        },
        "scenarios": {s.key: s.title for s in scenarios},
        "scopes": {s.key: s.scope for s in scenarios},
        "forget_sizes": {s.key: len(s.forget_rows) for s in scenarios},
        "request_sizes": {s.key: [len(r) for r in s.requests] for s in scenarios if s.sequential},
    }


def run_seed(profile: Profile, ds: ArrayDataset, seed: int, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(seed)
    run = Experiment(profile, ds, seed, device)
    try:
        run.train_original()
        scenarios = scenarios_of(profile, ds, seed)
        rows = []
        for scenario in scenarios:
            rows += run.scenario(scenario)
        return seed_summary(run, scenarios, rows)
    finally:
        run.close()
