"""What a benchmark run uses: the data, the model and its training recipe, the scenarios' sizes.

Profiles differ only in data, architecture and recipe, never in method parameters: every row runs
a method at the service's defaults, or a documented variant named in its label (the same variants on
every dataset). The quick digits profile runs a subset of the rows so the test suite stays fast.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.engine.datasets import ArrayDataset, validate_arrays
from workers.engine.recipe import TrainingRecipe
from workers.engine.update_log import RecorderConfig

CLASS, SAMPLE, SEQUENTIAL = "class_labels", "sample_ids", "sequential"
DENSE_ONLY = frozenset({"amnesiac"})  # methods the benchmark runs on the dense log (SeedRun.log_for)


@dataclass(frozen=True)
class Row:
    label: str
    method: str  # a method of the service, or "auto"
    params: dict = field(default_factory=dict)
    where: frozenset[str] = frozenset({CLASS, SAMPLE})  # scopes it runs in, and "sequential"


def rows(first_epoch_layers: list[str]) -> list[Row]:
    """Every method at its defaults, the documented variants, and ``auto``. The first-epoch rows
    update only the layers whose first-epoch gradients were recorded; the current-gradient row
    restricted to the same layers is their control."""
    layers = "+".join(first_epoch_layers)
    every = frozenset({CLASS, SAMPLE, SEQUENTIAL})
    return [
        Row("finetune", "finetune"),
        Row("amnesiac", "amnesiac", where=every),
        Row("partial_amnesiac", "partial_amnesiac", where=every),
        Row("label_flip", "label_flip"),
        Row("label_flip (partial)", "label_flip", {"partial": True}),
        Row("gradient_ascent", "gradient_ascent", where=every),
        Row("gradient_ascent (partial)", "gradient_ascent", {"partial": True}),
        Row(f"gradient_ascent ({layers}, control)", "gradient_ascent", {"layers": list(first_epoch_layers)}),
        Row(f"gradient_ascent (first-epoch, {layers})", "gradient_ascent", {"gradients": "first_epoch"}, every),
        Row(
            f"gradient_ascent (first-epoch, {layers}, partial)",
            "gradient_ascent",
            {"gradients": "first_epoch", "partial": True},
        ),
        Row("salun", "salun", where=every),
        Row("scrub", "scrub", where=every),
        Row("unsir", "unsir", where=frozenset({CLASS})),
        Row(
            "unsir (reference: 1 noise input x 20)",
            "unsir",
            {"impair_noise_samples": 1, "noise_copies": 20},
            frozenset({CLASS}),
        ),
        Row(
            "unsir (all noise inputs x 20)",
            "unsir",
            {"impair_noise_samples": None, "noise_copies": 20},
            frozenset({CLASS}),
        ),
        Row("unsir (no noise, ablation)", "unsir", {"use_noise": False}, frozenset({CLASS})),
        Row("auto", "auto", where=every),
    ]


@dataclass
class Profile:
    name: str
    title: str  # the data and the model, for the tables
    load: Callable[[], ArrayDataset]
    architecture: str
    config: dict
    recipe: TrainingRecipe
    dense_log: RecorderConfig | None  # None: no dense log, and no row that needs one (DENSE_ONLY)
    pruned_log: RecorderConfig  # also records the first-epoch gradients
    sample_fraction: float = 0.01  # scenario 3: this share of the training samples, at random
    class_samples: int = 100  # scenario 4: samples of one class (at most half of it)
    requests: int = 10  # scenario 5: the random set in this many successive requests
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    retain_eval_rows: int = 5_000
    class_names: dict[int, str] = field(default_factory=dict)
    only: list[str] | None = None  # row labels to run (the quick profile); None: every row
    command: str = ""
    scenarios: list[str] | None = None  # scenario keys to run (scenarios.build); None: every scenario
    first: list[str] = field(default_factory=list)  # row labels run before the others, in this order

    def rows(self) -> list[Row]:
        every = rows(list(self.pruned_log.first_epoch_gradients or []))
        if self.dense_log is None:
            every = [r for r in every if r.method not in DENSE_ONLY]
        chosen = every if self.only is None else [r for r in every if r.label in self.only]
        if self.first:  # a time-bounded run (benchmarks/gpu) starts with the rows that matter most
            rank = {label: i for i, label in enumerate(self.first)}
            chosen = sorted(chosen, key=lambda r: rank.get(r.label, len(rank)))
        return chosen

    def rows_for(self, where: str) -> list[Row]:
        return [r for r in self.rows() if where in r.where]


def mnist(path: Path) -> Profile:
    def load() -> ArrayDataset:
        with np.load(path, allow_pickle=False) as d:
            ids = np.array([f"mnist-{i:05d}" for i in range(len(d["y"]))])
            return validate_arrays(ids, d["x"], d["y"].astype(np.int64), d["split"].astype(np.int64))

    return Profile(
        name="mnist",
        title="MNIST, a small CNN (cnn_small, conv 8-16, hidden 64)",
        load=load,
        architecture="cnn_small",
        config={"channels": [8, 16], "hidden": 64},
        # retraining takes about a minute on two CPU cores; the original reaches >= 98.5% test accuracy
        recipe=TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, epochs=15, batch_size=64, seed=0),
        dense_log=RecorderConfig(mode="dense", chunk_steps=256),
        pruned_log=RecorderConfig(mode="pruned", top_p=0.1, chunk_steps=256, first_epoch_gradients=["fc2"]),
        command=f"python -m benchmarks.forgetting --profile mnist --data {path}",
    )


CIFAR10_NAMES = dict(
    enumerate(["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"])
)


def cifar10(path: Path) -> Profile:
    def load() -> ArrayDataset:
        from PIL import Image

        with np.load(path, allow_pickle=False) as d:
            jpeg, lengths, y, split = d["jpeg"], d["lengths"], d["y"], d["split"]
        ends = np.cumsum(lengths)
        starts = ends - lengths
        # (H, W, 3) RGB JPEGs -> (3, H, W) rows, the layout the convolutions read
        images = [Image.open(io.BytesIO(jpeg[a:b].tobytes())).convert("RGB") for a, b in zip(starts, ends, strict=True)]
        x = np.stack([np.asarray(image) for image in images]).transpose(0, 3, 1, 2)
        ids = np.array([f"cifar10-{i:05d}" for i in range(len(y))])
        return validate_arrays(ids, np.ascontiguousarray(x), y.astype(np.int64), split.astype(np.int64))

    return Profile(
        name="cifar10",
        title="CIFAR-10, ResNet-18 at width 8 (CIFAR stem)",
        load=load,
        architecture="resnet18",
        config={"width": 8},
        # retraining takes 5-10 minutes on two CPU cores and reaches ~77% test accuracy with ~85% on the
        # training rows: enough overfitting for membership inference to tell members apart
        recipe=TrainingRecipe(
            optimizer="sgd",
            lr=0.1,
            momentum=0.9,
            weight_decay=5e-4,
            epochs=6,
            batch_size=128,
            lr_schedule="linear_decay",
            seed=0,
        ),
        dense_log=RecorderConfig(mode="dense", chunk_steps=256),
        pruned_log=RecorderConfig(mode="pruned", top_p=0.1, chunk_steps=256, first_epoch_gradients=["fc"]),
        seeds=[0, 1],
        class_names=CIFAR10_NAMES,
        command=f"python -m benchmarks.forgetting --profile cifar10 --data {path}",
    )


def digits_quick() -> Profile:
    from app.datasets.builtin import digits_arrays

    return Profile(
        name="digits-quick",
        title="scikit-learn digits, a small CNN",
        load=lambda: validate_arrays(**digits_arrays()),
        architecture="cnn_small",
        config={"channels": [8, 16], "hidden": 32},
        recipe=TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, epochs=15, batch_size=64, seed=0),
        dense_log=RecorderConfig(mode="dense"),
        pruned_log=RecorderConfig(mode="pruned", top_p=0.1, first_epoch_gradients=["fc2"]),
        class_samples=20,
        requests=3,
        seeds=[0],
        only=[
            "unsir",
            "unsir (reference: 1 noise input x 20)",
            "gradient_ascent (first-epoch, fc2)",
            "gradient_ascent (first-epoch, fc2, partial)",
            "gradient_ascent (fc2, control)",
            "partial_amnesiac",
            "salun",
            "scrub",
            "auto",
        ],
        command="python -m benchmarks.forgetting --quick",
    )


PROFILES = {"mnist": mnist, "cifar10": cifar10}
