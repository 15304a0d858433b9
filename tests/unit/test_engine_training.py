"""The training loop, retrain and finetune on digits: determinism, exact forgetting, divergence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.unit.engine_fixtures import RECIPE, Recorder, digits_tensors, fresh_model, make_task, split_by_label
from workers.engine.checkpoints import state_equal
from workers.engine.evaluation import accuracy
from workers.engine.methods import METHODS
from workers.engine.runtime import Progress, TrainingDiverged
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, train


@pytest.fixture(scope="module")
def data():
    return digits_tensors()


def _trained(train_set, seed=0):
    seed_everything(seed)
    return train(fresh_model(), train_set, RECIPE.model_copy(update={"seed": seed}), progress=Progress())


def test_training_is_deterministic_for_a_seed(data):
    train_set, test = data
    a, b, c = _trained(train_set), _trained(train_set), _trained(train_set, seed=1)
    assert state_equal(a, b) and not state_equal(a, c)
    assert accuracy(a, test) > 0.9


def test_retrain_forgets_a_class_and_keeps_the_rest(data):
    train_set, test = data
    original = _trained(train_set)
    rec = Recorder()
    task = make_task(original, train_set, test, label=3, hooks=rec)
    method = METHODS["retrain"]
    params = method.parse_params({})
    task.progress.total_steps = method.planned_steps(task, params)
    model = method.run(task, params)
    forgotten, kept = split_by_label(test, 3)
    assert accuracy(model, forgotten) == 0.0
    assert accuracy(model, kept) >= accuracy(original, kept) - 0.03
    assert [r.step for r in rec.records] == list(range(1, task.progress.total_steps + 1))
    assert {r.phase for r in rec.records} == {"retrain"} and rec.records[-1].samples_seen == 10 * len(task.retain)


def test_finetune_changes_the_model_and_records_batches(data):
    train_set, test = data
    original = _trained(train_set)
    rec = Recorder()
    task = make_task(original, train_set, test, label=5, hooks=rec)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    METHODS["finetune"].run(task, METHODS["finetune"].parse_params({"epochs": 1}))
    assert any(not torch.equal(before[k], v) for k, v in task.model.state_dict().items())
    assert len(rec.records) == int(np.ceil(len(task.retain) / 64))


def test_divergence_is_detected():
    x = torch.full((32, 8, 8), float("nan"))  # as bad data or a blown-up step would give
    bad = LabelledTensors(x, torch.zeros(32, dtype=torch.long))
    with pytest.raises(TrainingDiverged, match="loss became"):
        train(fresh_model(), bad, RECIPE, progress=Progress(), epochs=1)


def test_linear_decay_takes_the_learning_rate_to_zero_over_the_run(data):
    train_set, _ = data
    recipe = RECIPE.model_copy(update={"lr_schedule": "linear_decay", "epochs": 2})
    seen: list[float] = []

    class Watch:
        def before_step(self, model, epoch, batch, rows):
            pass

        def after_step(self, model, epoch, batch, rows):
            seen.append(optimizer.param_groups[0]["lr"])

    seed_everything(0)
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum)
    train(model, train_set, recipe, progress=Progress(), observer=Watch(), optimizer=optimizer)
    steps = 2 * -(-len(train_set) // recipe.batch_size)
    assert len(seen) == steps and seen[0] == pytest.approx(recipe.lr)
    assert seen[-1] == pytest.approx(recipe.lr / steps) and all(a > b for a, b in zip(seen, seen[1:], strict=False))
