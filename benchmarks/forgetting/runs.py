"""One seed's data and primitives: the sets of a forget request, training the original with its
update logs, running a method, measuring a model and putting it through the service's gate."""

from __future__ import annotations

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
from benchmarks.forgetting.scenarios import Scenario
from workers.engine.architectures import build_model
from workers.engine.datasets import ArrayDataset
from workers.engine.device import prepare_model, standard_layout
from workers.engine.log_store import DirectoryLogStore
from workers.engine.methods import METHODS, UnlearningTask
from workers.engine.metrics import accuracies, verification
from workers.engine.recorder import Observers, UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, train
from workers.engine.update_log import ManifestReader
from workers.engine.verification import gate
from workers.engine.verification.policy import VerificationPolicy

log = logging.getLogger("benchmarks.forgetting")


@dataclass
class Sets:
    forget: LabelledTensors
    retain: LabelledTensors
    retain_eval: LabelledTensors
    test: LabelledTensors  # evaluation rows of the classes still known
    forget_class_test: LabelledTensors | None
    unseen: LabelledTensors  # evaluation rows of the forget set's classes: the MIA's non-members
    gate: gate.GateData


class SeedRun:
    def __init__(self, profile: Profile, ds: ArrayDataset, seed: int, device: torch.device):
        self.profile, self.ds, self.seed, self.device = profile, ds, seed, device
        self.recipe = profile.recipe.model_copy(update={"seed": seed})
        self.policy = VerificationPolicy()  # the service's defaults
        self.train_rows = ds.rows("train")
        # Held-out roles (workers/engine/holdout.py): methods calibrate on the calibration rows only;
        # test figures, the membership attack's non-members and the gate read the evaluation rows.
        self.test_rows = ds.held_out("evaluation")
        # Built once; every set is a view into these (copying the data for each method costs seconds).
        self.train_data = self.tensors(self.train_rows, ids=True)
        self.test_data = self.tensors(self.test_rows)
        self.calibration_data = self.tensors(ds.held_out("calibration"))
        self.workdir = Path(tempfile.mkdtemp(prefix=f"unlearnd-bench-{seed}-"))

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ---- data ---------------------------------------------------------------------------------
    def fresh_model(self) -> nn.Module:
        p = self.profile
        model = build_model(p.architecture, p.config, self.ds.input_shape, self.ds.num_classes)
        return prepare_model(model, self.device)

    def tensors(self, rows: np.ndarray, ids: bool = False) -> LabelledTensors:
        ds = self.ds
        names = ds.ids[rows].tolist() if ids else None
        return LabelledTensors.from_arrays(ds.x[rows], ds.y[rows], names, self.device)

    def train_part(self, rows: np.ndarray, ids: bool = False) -> LabelledTensors:
        positions = torch.from_numpy(np.searchsorted(self.train_rows, rows))
        if ids:
            return self.train_data.subset(positions)
        positions = positions.to(self.device)
        return LabelledTensors(self.train_data.x[positions], self.train_data.y[positions])

    def test_part(self, labels) -> LabelledTensors:
        mask = np.isin(self.ds.y[self.test_rows], np.asarray(list(labels), dtype=np.int64))
        index = torch.from_numpy(mask).to(self.device)
        return LabelledTensors(self.test_data.x[index], self.test_data.y[index])

    def sets(self, forget_rows: np.ndarray, scenario: Scenario, retain_rows: np.ndarray | None = None) -> Sets:
        ds = self.ds
        if retain_rows is None:
            retain_rows = np.setdiff1d(self.train_rows, forget_rows)
        rng = np.random.default_rng(self.seed)
        eval_rows = np.sort(
            rng.choice(retain_rows, min(len(retain_rows), self.profile.retain_eval_rows), replace=False)
        )
        forget = self.train_part(forget_rows, ids=True)
        classes = scenario.classes
        return Sets(
            forget=forget,
            retain=self.train_part(retain_rows),
            retain_eval=self.train_part(eval_rows),
            test=self.test_part(np.unique(ds.y[retain_rows])),
            forget_class_test=self.test_part(classes) if classes else None,
            unseen=self.test_part(np.unique(ds.y[forget_rows])),
            gate=gate.GateData(forget=forget, evaluation=self.test_data, scope=scenario.scope, forget_classes=classes),
        )

    # ---- the original model -------------------------------------------------------------------
    def train_original(self) -> None:
        p = self.profile
        data, ids = self.train_data, self.train_data.ids
        seed_everything(self.seed)
        model = self.fresh_model()
        pruned_store = DirectoryLogStore(self.workdir / "pruned")
        pruned = UpdateRecorder(model, ids, p.pruned_log, pruned_store, data=data)
        dense = dense_store = None
        if p.dense_log is not None:
            dense_store = DirectoryLogStore(self.workdir / "dense")
            dense = UpdateRecorder(model, ids, p.dense_log, dense_store)
        observer = pruned if dense is None else Observers(dense, pruned)
        started = time.perf_counter()
        self.original = train(model, data, self.recipe, progress=Progress(), observer=observer)
        self.train_seconds = time.perf_counter() - started
        self.dense_log = None if dense is None else ManifestReader(dense.finish(), dense_store)
        self.pruned_log = ManifestReader(pruned.finish(), pruned_store)
        with standard_layout(self.original):
            self.original_test_accuracy = accuracies(self.original, {"t": self.test_data})["t_accuracy"]
        log.info(
            "seed %d: original trained in %.1fs, test accuracy %.4f; logs dense %s MB, pruned %.1f MB",
            self.seed,
            self.train_seconds,
            self.original_test_accuracy,
            "(none)" if self.dense_log is None else f"{self.dense_log.manifest.stored_bytes / 1e6:.1f}",
            self.pruned_log.manifest.stored_bytes / 1e6,
        )

    @property
    def dense_log_bytes(self) -> int | None:
        return None if self.dense_log is None else self.dense_log.manifest.stored_bytes

    def log_for(self, method: str) -> ManifestReader | None:
        """amnesiac reads the dense log; every other method the pruned one with the first-epoch
        gradients: the log a model registered for ``auto`` would have."""
        if method == "amnesiac":
            return self.dense_log
        if method in ("gradient_ascent", "auto") or METHODS[method].needs_update_log:
            return self.pruned_log
        return None

    def storage_for(self, method: str, params: dict) -> int | None:
        if method == "amnesiac":
            return self.dense_log_bytes
        if method == "partial_amnesiac":
            return self.pruned_log.manifest.stored_bytes
        # auto's plan starts with first-epoch gradients; current-gradient ascent reads no log
        if method == "auto" or (method == "gradient_ascent" and params.get("gradients") == "first_epoch"):
            return self.pruned_log.manifest.gradient_bytes
        return 0

    def reset_logs(self) -> None:
        for reader in (self.dense_log, self.pruned_log):
            if reader is None:
                continue
            reader.consumed = set()
            reader.bytes_read = 0

    # ---- running and measuring ----------------------------------------------------------------
    def task(self, model: nn.Module, scenario: Scenario, sets: Sets, log_reader: ManifestReader | None):
        return UnlearningTask(
            model=model,
            build_model=self.fresh_model,
            recipe=self.recipe,
            forget=sets.forget,
            retain=sets.retain,
            scope=scenario.scope,
            num_classes=self.ds.num_classes,
            device=self.device,
            progress=Progress(),
            forget_classes=scenario.classes,
            holdout=self.calibration_data,
            update_log=log_reader,
        )

    def run(
        self, model: nn.Module, scenario: Scenario, method: str, params: dict, sets: Sets
    ) -> tuple[nn.Module, float, UnlearningTask]:
        task = self.task(model, scenario, sets, self.log_for(method))
        impl = METHODS[method]
        parsed = impl.parse_params(params)
        started = time.perf_counter()
        out = impl.run(task, parsed)
        return out.eval(), time.perf_counter() - started, task

    @staticmethod
    def evaluate(model: nn.Module, sets: Sets) -> dict[str, Any]:
        named = {"forget": sets.forget, "retain": sets.retain_eval, "test": sets.test}
        if sets.forget_class_test is not None:
            named["forget_class_test"] = sets.forget_class_test
        with standard_layout(model):
            return verification(model, named, "forget", sets.unseen)

    def baseline(self, sets: Sets, source: nn.Module | None = None) -> float | None:
        """The source model's utility figure the gate compares every attempt with."""
        return gate.source_utility(self.original if source is None else source, sets.gate)

    def verify(self, model: nn.Module, sets: Sets) -> dict[str, Any]:
        """The service's gate on ``model`` with the default policy (utility against the original):
        pass/fail per test."""
        started = time.perf_counter()
        verdict = gate.verify(model, sets.gate, self.policy, source=self.baseline(sets), recipe=self.recipe)
        return gate_fields(verdict, time.perf_counter() - started)


def gate_fields(verdict: dict[str, Any], seconds: float | None = None) -> dict[str, Any]:
    tests = {t["name"]: t["passed"] for t in verdict["tests"]}
    relearn = next((t for t in verdict["tests"] if t["name"] == "relearn"), {})
    out = {"gate_passed": verdict["passed"], "gate": tests, "relearn_statistic": relearn.get("statistic")}
    if seconds is not None:
        out["verify_seconds"] = seconds
    return out
