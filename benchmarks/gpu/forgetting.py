"""Forgetting on the GPU: the forgetting benchmark's own machinery (benchmarks/forgetting: the
Experiment, its gate, auto's attempt loop, its report) on a profile sized for one short device call,
bounded by a deadline: a scenario gets an equal share of the time left when it starts, and a row not
started by its scenario's deadline is left out and listed."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from benchmarks.forgetting.experiment import Experiment, scenarios_of, seed_summary
from benchmarks.forgetting.profiles import Profile, cifar10, digits_quick
from workers.engine.datasets import ArrayDataset
from workers.engine.update_log import RecorderConfig

log = logging.getLogger("benchmarks.gpu")

SCENARIOS = ["class-3", "random-samples"]  # one class; 1% of the training samples at random
LAYERS = ["fc"]  # the layer whose first-epoch gradients the pruned log records (as the cifar10 profile)
# Every method at its defaults, auto (the service's default) first, then first-epoch gradient ascent
# (auto's first attempt for samples, its second for classes), then roughly by expected cost;
# partial_amnesiac reads the whole pruned log back, so it goes last.
ROWS = [
    "auto",
    "gradient_ascent (first-epoch, fc)",
    "unsir",
    "gradient_ascent",
    "label_flip",
    "salun",
    "scrub",
    "finetune",
    "partial_amnesiac",
]

# The CIFAR-10 profile's recipe (docs/decisions/forgetting-benchmark-v2.md): SGD lr 0.1, momentum
# 0.9, weight decay 5e-4, batch 128, linear decay; here at the published width, for fewer epochs.
RECIPE = cifar10(Path("cifar10-jpeg.npz")).recipe


def gpu_profile(path: Path, width: int, epochs: int) -> Profile:
    base = cifar10(path)
    return dataclasses.replace(
        base,
        name="cifar10-gpu",
        title=f"CIFAR-10, ResNet-18 at width {width} (CIFAR stem), {epochs} epochs",
        config={"width": width},
        recipe=RECIPE.model_copy(update={"epochs": epochs}),
        dense_log=None,  # E x 17.5 GB at width 64: amnesiac's row is left out
        pruned_log=base.pruned_log,  # top 10% per tensor, first-epoch gradients of fc, chunks of 256 steps
        seeds=[0],
        scenarios=SCENARIOS,
        only=ROWS,
        first=ROWS,
        command=f"python -m benchmarks.gpu --data {path} --device cuda",
    )


def quick_profile(width: int, epochs: int) -> Profile:
    """digits, the same recipe at a tiny width, a few rows: the same code path in seconds on a CPU."""
    rows = ["auto", "gradient_ascent (first-epoch, fc)", "unsir"]
    return dataclasses.replace(
        digits_quick(),
        name="digits-quick-gpu",
        title=f"scikit-learn digits, ResNet-18 at width {width}, {epochs} epochs",
        architecture="resnet18",
        config={"width": width},
        recipe=RECIPE.model_copy(update={"epochs": epochs}),
        dense_log=None,
        pruned_log=RecorderConfig(mode="pruned", top_p=0.1, first_epoch_gradients=LAYERS),
        scenarios=SCENARIOS,
        only=rows,
        first=rows,
        command="python -m benchmarks.gpu --quick",
    )


def run(
    profile: Profile,
    ds: ArrayDataset,
    device: torch.device,
    deadline: float,
    on_progress: Callable[[dict[str, Any]], None],
    retrain_estimate: float | None = None,
) -> dict[str, Any] | None:
    """One seed: the original with the pruned log, then each scenario within its share of the time
    left before ``deadline`` (time.monotonic); a scenario whose share would not cover its retrain
    (``retrain_estimate`` seconds, default: the original's training time) is left out.
    ``on_progress`` gets the record after the original and after each scenario; returns the last."""
    seed = profile.seeds[0]
    torch.manual_seed(seed)
    experiment = Experiment(profile, ds, seed, device)
    skipped_scenarios: list[str] = []
    failed: list[str] = []

    def record(done: list, rows: list) -> dict[str, Any]:
        out = seed_summary(experiment, done, rows)
        out["skipped_rows"] = [list(s) for s in experiment.skipped]
        out["skipped_scenarios"] = list(skipped_scenarios)
        out["failed_scenarios"] = list(failed)
        out["epochs"] = profile.recipe.epochs
        return out

    try:
        experiment.train_original()
        scenarios = scenarios_of(profile, ds, seed)
        done, rows = [], []
        on_progress(record(done, rows))
        for i, scenario in enumerate(scenarios):
            left = deadline - time.monotonic()
            share = left / (len(scenarios) - i)
            retrain = experiment.train_seconds if retrain_estimate is None else retrain_estimate
            if share < retrain + 10:
                skipped_scenarios.append(scenario.key)
                log.info(
                    "scenario %s skipped: %.0f s left for it, retraining takes ~%.0f s", scenario.key, share, retrain
                )
                continue
            experiment.deadline = time.monotonic() + share
            try:
                rows += experiment.scenario(scenario)
            except Exception as exc:  # a scenario failing keeps the others (its rows are lost)
                log.exception("scenario %s failed", scenario.key)
                failed.append(f"{scenario.key}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
                continue
            done.append(scenario)
            on_progress(record(done, rows))
        return record(done, rows)
    finally:
        experiment.close()
