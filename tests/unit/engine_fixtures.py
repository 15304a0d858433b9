"""Shared by the engine tests: digits as tensors, a small CNN, recipes, a hooks recorder."""

from __future__ import annotations

import copy

import numpy as np
import torch

from app.datasets.builtin import digits_arrays
from workers.engine.architectures import build_model
from workers.engine.methods import UnlearningTask
from workers.engine.recipe import TrainingRecipe
from workers.engine.runtime import NoHooks, Progress
from workers.engine.tensors import LabelledTensors

RECIPE = TrainingRecipe(optimizer="sgd", lr=0.1, momentum=0.9, epochs=10, batch_size=64, seed=0)
CONFIG = {"channels": [8, 16], "hidden": 32}


def digits_tensors() -> tuple[LabelledTensors, LabelledTensors]:
    d = digits_arrays()
    tr, te = d["split"] == "train", d["split"] == "test"
    return (
        LabelledTensors.from_arrays(d["x"][tr], d["y"][tr], d["ids"][tr]),
        LabelledTensors.from_arrays(d["x"][te], d["y"][te]),
    )


def fresh_model():
    return build_model("cnn_small", CONFIG, (8, 8), 10)


class Recorder(NoHooks):
    def __init__(self, cancel_after: int | None = None):
        self.records, self.cancel_after = [], cancel_after

    def on_batch(self, record):
        self.records.append(record)

    def should_cancel(self):
        return self.cancel_after is not None and len(self.records) >= self.cancel_after


def make_task(model, train_set, test, *, label=None, forget_ids=None, log=None, hooks=None) -> UnlearningTask:
    if label is not None:
        forget = train_set.y == label
        scope, classes = "class_labels", (label,)
    else:
        forget = torch.from_numpy(np.isin(np.array(train_set.ids), forget_ids))
        scope, classes = "sample_ids", ()
    return UnlearningTask(
        model=copy.deepcopy(model),
        build_model=fresh_model,
        recipe=RECIPE,
        forget=train_set.subset(forget.nonzero()[:, 0]),
        retain=train_set.subset((~forget).nonzero()[:, 0]),
        scope=scope,
        num_classes=10,
        device=torch.device("cpu"),
        progress=Progress(hooks),
        forget_classes=classes,
        holdout=test,
        update_log=log,
    )


def split_by_label(data: LabelledTensors, label: int) -> tuple[LabelledTensors, LabelledTensors]:
    return data.subset((data.y == label).nonzero()[:, 0]), data.subset((data.y != label).nonzero()[:, 0])
