"""One seed of the benchmark: train the original with update logs, then every scenario's methods."""

from __future__ import annotations

import copy
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks.forgetting.profiles import Profile
from benchmarks.forgetting.scenarios import Scenario, build
from workers.engine.architectures import build_model
from workers.engine.datasets import ArrayDataset
from workers.engine.device import prepare_model, standard_layout
from workers.engine.log_store import DirectoryLogStore
from workers.engine.methods import METHODS, UnlearningTask
from workers.engine.metrics import accuracies, gaps, verification
from workers.engine.recorder import Observers, UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, train
from workers.engine.update_log import ManifestReader

log = logging.getLogger("benchmarks.forgetting")
DEVICE = torch.device("cpu")


@dataclass
class Sets:
    forget: LabelledTensors
    retain: LabelledTensors
    retain_eval: LabelledTensors
    test: LabelledTensors  # evaluation rows of the classes still known
    forget_class_test: LabelledTensors | None
    unseen: LabelledTensors  # evaluation rows of the forget set's classes: the MIA's non-members


class SeedRun:
    def __init__(self, profile: Profile, ds: ArrayDataset, seed: int):
        self.profile, self.ds, self.seed = profile, ds, seed
        self.recipe = profile.recipe.model_copy(update={"seed": seed})
        self.train_rows = ds.rows("train")
        # Held-out roles (workers/engine/holdout.py): methods calibrate on the calibration rows only;
        # test figures and the membership attack's non-members are the evaluation rows.
        self.test_rows = ds.held_out("evaluation")
        # Built once; every set is a view into these (copying MNIST for each method costs seconds).
        self.train_data = self.tensors(self.train_rows, ids=True)
        self.test_data = self.tensors(self.test_rows)
        self.calibration_data = self.tensors(ds.held_out("calibration"))
        self.workdir = Path(tempfile.mkdtemp(prefix=f"unlearnd-bench-{seed}-"))
        self._retrained: dict[bytes, tuple[dict, float]] = {}

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- helpers ------------------------------------------------------------------------------
    def fresh_model(self) -> nn.Module:
        p = self.profile
        return prepare_model(build_model(p.architecture, p.config, self.ds.input_shape, self.ds.num_classes), DEVICE)

    def tensors(self, rows: np.ndarray, ids: bool = False) -> LabelledTensors:
        ds = self.ds
        return LabelledTensors.from_arrays(ds.x[rows], ds.y[rows], ds.ids[rows].tolist() if ids else None, DEVICE)

    def train_part(self, rows: np.ndarray, ids: bool = False) -> LabelledTensors:
        positions = torch.from_numpy(np.searchsorted(self.train_rows, rows))
        if ids:
            return self.train_data.subset(positions)
        return LabelledTensors(self.train_data.x[positions], self.train_data.y[positions])

    def test_part(self, labels) -> LabelledTensors:
        mask = torch.from_numpy(np.isin(self.ds.y[self.test_rows], np.asarray(list(labels), dtype=np.int64)))
        return LabelledTensors(self.test_data.x[mask], self.test_data.y[mask])

    def sets(self, forget_rows: np.ndarray, classes: tuple[int, ...]) -> Sets:
        ds = self.ds
        retain_rows = np.setdiff1d(self.train_rows, forget_rows)
        rng = np.random.default_rng(self.seed)
        eval_rows = np.sort(
            rng.choice(retain_rows, min(len(retain_rows), self.profile.retain_eval_rows), replace=False)
        )
        return Sets(
            forget=self.train_part(forget_rows, ids=True),
            retain=self.train_part(retain_rows),
            retain_eval=self.train_part(eval_rows),
            test=self.test_part(np.unique(ds.y[retain_rows])),
            forget_class_test=self.test_part(classes) if classes else None,
            unseen=self.test_part(np.unique(ds.y[forget_rows])),
        )

    @staticmethod
    def evaluate(model: nn.Module, sets: Sets) -> dict[str, Any]:
        named = {"forget": sets.forget, "retain": sets.retain_eval, "test": sets.test}
        if sets.forget_class_test is not None:
            named["forget_class_test"] = sets.forget_class_test
        with standard_layout(model):
            return verification(model, named, "forget", sets.unseen)

    # ---- the original model -------------------------------------------------------------------
    def train_original(self) -> None:
        p = self.profile
        data, ids = self.train_data, self.train_data.ids
        seed_everything(self.seed)
        model = self.fresh_model()
        dense_store = DirectoryLogStore(self.workdir / "dense")
        pruned_store = DirectoryLogStore(self.workdir / "pruned")
        dense = UpdateRecorder(model, ids, p.dense_log, dense_store)
        pruned = UpdateRecorder(model, ids, p.pruned_log, pruned_store, data=data)
        started = time.perf_counter()
        self.original = train(model, data, self.recipe, progress=Progress(), observer=Observers(dense, pruned))
        self.train_seconds = time.perf_counter() - started
        self.dense_log = ManifestReader(dense.finish(), dense_store)
        self.pruned_log = ManifestReader(pruned.finish(), pruned_store)
        with standard_layout(self.original):
            self.original_test_accuracy = accuracies(self.original, {"t": self.test_data})["t_accuracy"]
        log.info(
            "seed %d: original trained in %.1fs, test accuracy %.4f; logs dense %.1f MB, pruned %.1f MB",
            self.seed,
            self.train_seconds,
            self.original_test_accuracy,
            self.dense_log.manifest.stored_bytes / 1e6,
            self.pruned_log.manifest.stored_bytes / 1e6,
        )

    def log_for(self, method: str) -> ManifestReader | None:
        if method == "amnesiac":
            return self.dense_log
        if method in ("partial_amnesiac", "gradient_ascent"):
            return self.pruned_log  # pruned deltas, and the first-epoch gradients
        return None

    def storage_for(self, method: str, params: dict) -> int:
        if method == "amnesiac":
            return self.dense_log.manifest.stored_bytes
        if method == "partial_amnesiac":
            return self.pruned_log.manifest.stored_bytes
        if method == "gradient_ascent" and params.get("gradients") == "first_epoch":
            return self.pruned_log.manifest.gradient_bytes
        return 0

    # ---- running methods ----------------------------------------------------------------------
    def run(
        self, model: nn.Module, scenario: Scenario, method: str, params: dict, sets: Sets
    ) -> tuple[nn.Module, float, UnlearningTask]:
        reader = self.log_for(method)
        if reader is not None:
            reader.bytes_read = 0
        task = UnlearningTask(
            model=model,
            build_model=self.fresh_model,
            recipe=self.recipe,
            forget=sets.forget,
            retain=sets.retain,
            scope=scenario.scope,
            num_classes=self.ds.num_classes,
            device=DEVICE,
            progress=Progress(),
            forget_classes=scenario.classes,
            holdout=self.calibration_data,
            update_log=reader,
        )
        impl = METHODS[method]
        parsed = impl.parse_params(params)
        started = time.perf_counter()
        out = impl.run(task, parsed)
        return out, time.perf_counter() - started, task

    def scenario(self, scenario: Scenario) -> list[dict[str, Any]]:
        sets = self.sets(scenario.forget_rows, scenario.classes)
        reference, retrain_seconds = self.retrain(scenario, sets)
        rows = [
            self._row(scenario, "original", self.evaluate(self.original, sets), None, retrain_seconds, reference, 0),
            self._row(scenario, "retrain", reference, retrain_seconds, retrain_seconds, reference, 0),
        ]
        if scenario.sequential:
            return rows + self.sequential(scenario, reference, retrain_seconds)
        methods = self.profile.class_methods if scenario.scope == "class_labels" else self.profile.sample_methods
        for label, method, params in methods:
            self._reset_logs()
            out, seconds, task = self.run(copy.deepcopy(self.original), scenario, method, params, sets)
            row = self._row(
                scenario,
                label,
                self.evaluate(out, sets),
                seconds,
                retrain_seconds,
                reference,
                self.storage_for(method, params),
                task,
            )
            rows.append(row)
            log.info("seed %d %s %-40s %.2fs", self.seed, scenario.key, label, seconds)
        return rows

    def retrain(self, scenario: Scenario, sets: Sets) -> tuple[dict, float]:
        """The reference: retrained once per forget set (scenarios 3 and 5 share theirs)."""
        key = scenario.forget_rows.tobytes()
        if key not in self._retrained:
            model, seconds, _ = self.run(self.fresh_model(), scenario, "retrain", {}, sets)
            self._retrained[key] = (self.evaluate(model, sets), seconds)
            log.info("seed %d %s retrain %.2fs", self.seed, scenario.key, seconds)
        return self._retrained[key]

    def sequential(self, scenario: Scenario, reference: dict, retrain_seconds: float) -> list[dict[str, Any]]:
        """Each method serves the requests one after another on the moving model; metrics after each
        cover everything forgotten so far. Retraining after every request would cost one retrain per
        request: the speed-up is against that (requests x the measured retrain)."""
        rows = []
        for label, method, params in self.profile.sequential_methods:
            self._reset_logs()
            model, elapsed, done = copy.deepcopy(self.original), 0.0, np.array([], dtype=np.int64)
            for i, request in enumerate(scenario.requests, start=1):
                done = np.union1d(done, request)
                sets = self.sets(done, ())
                request_sets = self.sets(request, ())
                request_sets.retain = sets.retain  # earlier requests' samples are erased: not retained
                model, seconds, task = self.run(model, scenario, method, params, request_sets)
                elapsed += seconds
                if task.consumed_log_steps and self.log_for(method) is not None:
                    self.log_for(method).consume(task.consumed_log_steps)
                metrics = self.evaluate(model, sets)
                final = i == len(scenario.requests)
                row = self._row(
                    scenario,
                    label,
                    metrics,
                    elapsed,
                    retrain_seconds * i,
                    reference if final else None,
                    self.storage_for(method, params),
                    task,
                )
                row["request"] = i
                rows.append(row)
            log.info("seed %d sequential %-40s %.2fs", self.seed, label, elapsed)
        return rows

    def _reset_logs(self) -> None:
        for reader in (self.dense_log, self.pruned_log):
            reader.consumed = set()

    def _row(
        self,
        scenario: Scenario,
        label: str,
        metrics: dict,
        seconds: float | None,
        retrain_seconds: float,
        reference: dict | None,
        storage: int,
        task: UnlearningTask | None = None,
    ) -> dict[str, Any]:
        row = {
            "seed": self.seed,
            "scenario": scenario.key,
            "method": label,
            **metrics,
            "seconds": seconds,
            "speedup": (retrain_seconds / seconds) if seconds else None,
            "log_bytes": storage,
            "dense_log_bytes": self.dense_log.manifest.stored_bytes,
        }
        if reference is not None:
            row.update(gaps(_pct(metrics), _pct(reference)))
        if task is not None:
            row["log_bytes_read"] = task.extra_metrics.get("update_log_bytes_read")
            row["stop_reason"] = task.extra_metrics.get("stop_reason")
        return row


def _pct(metrics: dict) -> dict:
    """Gaps are in percentage points."""
    return {k: (v * 100 if isinstance(v, float) else v) for k, v in metrics.items()}


def run_seed(profile: Profile, ds: ArrayDataset, seed: int) -> dict[str, Any]:
    torch.manual_seed(seed)
    run = SeedRun(profile, ds, seed)
    try:
        run.train_original()
        scenarios = build(
            ds, profile.sample_fraction, profile.one_digit, profile.sequential, np.random.default_rng(seed)
        )
        rows = []
        for scenario in scenarios:
            rows += run.scenario(scenario)
        pruned = run.pruned_log.manifest
        return {
            "seed": seed,
            "rows": rows,
            "train_seconds": run.train_seconds,
            "original_test_accuracy": run.original_test_accuracy,
            "logs": {
                "dense_bytes": run.dense_log.manifest.stored_bytes,
                "pruned_bytes": pruned.stored_bytes,
                "pruned_ratio": pruned.storage_ratio,
                "gradient_bytes": pruned.gradient_bytes,
                "steps": len(pruned.entries),
            },
            "scenarios": {s.key: s.title for s in scenarios},
        }
    finally:
        run.close()
