"""What a benchmark run uses: the data, the model and its recipe, the scenarios' sizes, the method
configurations. Two profiles: the MNIST run and the quick digits run the test suite uses."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from workers.engine.datasets import ArrayDataset, validate_arrays
from workers.engine.recipe import TrainingRecipe
from workers.engine.update_log import RecorderConfig

# (label, method, params): the rows of the tables. Params are the methods' defaults unless a row
# names a variant (partial, first-epoch gradients, the UNSIR noise settings).
CLASS_METHODS = [
    ("finetune", "finetune", {"epochs": 1}),
    ("amnesiac", "amnesiac", {}),
    ("partial_amnesiac", "partial_amnesiac", {}),
    ("label_flip", "label_flip", {}),
    ("label_flip (partial)", "label_flip", {"partial": True}),
    ("gradient_ascent", "gradient_ascent", {}),
    ("gradient_ascent (partial)", "gradient_ascent", {"partial": True}),
    ("gradient_ascent (first-epoch)", "gradient_ascent", {"gradients": "first_epoch"}),
    ("gradient_ascent (first-epoch, partial)", "gradient_ascent", {"gradients": "first_epoch", "partial": True}),
    ("unsir", "unsir", {}),
    ("unsir (reference: 1 noise input x 20)", "unsir", {"impair_noise_samples": 1, "noise_copies": 20}),
    ("unsir (all 256 noise inputs x 20)", "unsir", {"impair_noise_samples": None, "noise_copies": 20}),
    ("unsir (no noise, ablation)", "unsir", {"use_noise": False}),
]
SAMPLE_METHODS = [row for row in CLASS_METHODS if row[1] != "unsir"]
# Ten successive requests: the methods cheap enough to run ten times (finetune and label_flip are
# in the single-request scenarios).
SEQUENTIAL_METHODS = [
    ("amnesiac", "amnesiac", {}),
    ("partial_amnesiac", "partial_amnesiac", {}),
    ("gradient_ascent", "gradient_ascent", {}),
    ("gradient_ascent (first-epoch)", "gradient_ascent", {"gradients": "first_epoch"}),
]


@dataclass
class Profile:
    name: str
    load: Callable[[], ArrayDataset]
    architecture: str
    config: dict
    recipe: TrainingRecipe
    dense_log: RecorderConfig
    pruned_log: RecorderConfig  # also records the first-epoch gradients
    sample_fraction: float  # scenario 3: this share of the training samples, at random
    one_digit: tuple[int, int]  # scenario 4: (digit, how many of its samples)
    sequential: tuple[int, int]  # scenario 5: (requests, samples per request)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    retain_eval_rows: int = 5_000
    class_methods: list = field(default_factory=lambda: list(CLASS_METHODS))
    sample_methods: list = field(default_factory=lambda: list(SAMPLE_METHODS))
    sequential_methods: list = field(default_factory=lambda: list(SEQUENTIAL_METHODS))


def mnist(path: Path) -> Profile:
    def load() -> ArrayDataset:
        with np.load(path, allow_pickle=False) as d:
            ids = np.array([f"mnist-{i:05d}" for i in range(len(d["y"]))])
            return validate_arrays(ids, d["x"], d["y"].astype(np.int64), d["split"].astype(np.int64))

    return Profile(
        name="mnist",
        load=load,
        architecture="cnn_small",
        config={"channels": [8, 16], "hidden": 64},
        # retraining takes a minute or more on two CPU cores; the original reaches >= 98.5% test accuracy
        recipe=TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, epochs=15, batch_size=64, seed=0),
        dense_log=RecorderConfig(mode="dense", chunk_steps=256),
        pruned_log=RecorderConfig(mode="pruned", top_p=0.1, chunk_steps=256, first_epoch_gradients=["fc2"]),
        sample_fraction=0.01,
        one_digit=(8, 100),
        sequential=(10, 60),
    )


def digits_quick() -> Profile:
    from app.datasets.builtin import digits_arrays

    # On 1,437 training images the MNIST-sized defaults of UNSIR (batches of 256) take a handful of
    # steps: the quick profile sizes its batches and repair to the data.
    unsir = {"batch_size": 32, "repair_epochs": 3, "impair_noise_samples": 1}
    class_methods = [
        ("unsir", "unsir", unsir),
        ("gradient_ascent (first-epoch, partial)", "gradient_ascent", {"gradients": "first_epoch", "partial": True}),
        ("gradient_ascent (first-epoch)", "gradient_ascent", {"gradients": "first_epoch"}),
        ("label_flip (partial)", "label_flip", {"partial": True, "lr": 0.01, "retain_batches": 2}),
        ("partial_amnesiac", "partial_amnesiac", {}),
    ]
    return Profile(
        name="digits-quick",
        load=lambda: validate_arrays(**digits_arrays()),
        architecture="cnn_small",
        config={"channels": [8, 16], "hidden": 32},
        recipe=TrainingRecipe(optimizer="sgd", lr=0.05, momentum=0.9, epochs=15, batch_size=64, seed=0),
        dense_log=RecorderConfig(mode="dense"),
        pruned_log=RecorderConfig(mode="pruned", top_p=0.1, first_epoch_gradients=["fc2"]),
        sample_fraction=0.01,
        one_digit=(8, 20),
        sequential=(3, 5),
        seeds=[0],
        class_methods=class_methods,
        sample_methods=[row for row in class_methods if row[1] != "unsir"],
        sequential_methods=[
            ("partial_amnesiac", "partial_amnesiac", {}),
            ("gradient_ascent (first-epoch)", "gradient_ascent", {"gradients": "first_epoch"}),
        ],
    )
