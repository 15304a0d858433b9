"""Per-batch records stay on the device until settled: every record still reaches the hooks, in
order, with float values, before a run returns; divergence is caught at settle time and names its
step; a cancel settles first."""

from __future__ import annotations

import math

import pytest
import torch

from tests.unit.engine_fixtures import RECIPE, Recorder, digits_tensors, fresh_model, make_task
from workers.engine import runtime
from workers.engine.methods import METHODS
from workers.engine.runtime import Cancelled, Progress, TrainingDiverged
from workers.engine.training import Stepper, seed_everything, train


@pytest.fixture(autouse=True)
def no_time_bound(monkeypatch):
    """Settling by count alone: what these tests hold pending is not handed over by a slow machine."""
    monkeypatch.setattr(runtime, "SETTLE_AFTER_S", math.inf)


@pytest.fixture(scope="module")
def data():
    train_set, test = digits_tensors()
    return train_set.subset(torch.arange(640)), test


def _train(train_set, progress: Progress):
    seed_everything(0)
    return train(fresh_model(), train_set, RECIPE.model_copy(update={"epochs": 2}), progress=progress)


def test_settled_records_equal_records_settled_every_step(data):
    train_set, _ = data
    each, held = Recorder(), Recorder()
    _train(train_set, Progress(each, settle_every=1))
    _train(train_set, Progress(held, settle_every=7))  # 20 steps: 2 whole groups and a tail of 6
    assert len(held.records) == len(each.records) == 20
    assert held.records == each.records  # same steps, phases, losses and norms, in order
    assert [r.step for r in held.records] == list(range(1, 21))
    assert all(type(r.loss) is float and type(r.grad_norm) is float for r in held.records)
    assert all(math.isfinite(r.loss) and r.grad_norm > 0 for r in held.records)


METHOD_CASES = [("label_flip", {}), ("gradient_ascent", {"stop": "max_epochs"}), ("unsir", {})]


@pytest.mark.parametrize("name,params", METHOD_CASES, ids=[c[0] for c in METHOD_CASES])
def test_a_method_settles_its_last_records_before_it_returns(data, name, params):
    train_set, test = data
    model = _train(train_set, Progress())
    hooks = Recorder()
    task = make_task(model, train_set, test, label=3, hooks=hooks)
    task.progress.settle_every = 10_000  # nothing would settle on its own
    METHODS[name].run(task, METHODS[name].parse_params(params))
    assert task.progress.step > 0 and [r.step for r in hooks.records] == list(range(1, task.progress.step + 1))


def test_divergence_is_caught_at_settle_time_and_names_its_step():
    hooks = Recorder()
    progress = Progress(hooks, settle_every=100)
    for step, loss in enumerate([0.5, 0.4, float("nan"), 0.3]):
        progress.batch_done(phase="train", epoch=0, batch=step, loss=torch.tensor(loss), samples=8)
    assert hooks.records == []  # nothing read back yet
    with pytest.raises(TrainingDiverged, match="the train loss became nan at step 3"):
        progress.settle()
    assert [r.loss for r in hooks.records] == pytest.approx([0.5, 0.4])


def test_a_non_finite_objective_is_caught_even_when_the_reported_loss_is_finite():
    weight = torch.nn.Parameter(torch.ones(3))
    progress = Progress(settle_every=100)
    stepper = Stepper([weight], torch.optim.SGD([weight], lr=0.1), progress)
    stepper.step((weight * 2).sum(), phase="ascent", epoch=0, batch=0, samples=1, reported=torch.tensor(1.0))
    objective = (weight * float("inf")).sum()
    stepper.step(objective, phase="ascent", epoch=0, batch=1, samples=1, reported=torch.tensor(1.0))
    with pytest.raises(TrainingDiverged, match="at step 2"):
        progress.settle()


def test_a_cancel_settles_the_steps_taken_before_it_stops():
    class CancelNow(Recorder):
        def should_cancel(self):
            return True

    hooks = CancelNow()
    progress = Progress(hooks, settle_every=100)
    for step in range(3):
        progress.batch_done(phase="train", epoch=0, batch=step, loss=torch.tensor(1.0), samples=4, grad_norm=2.0)
    with pytest.raises(Cancelled, match="after step 3"):
        progress.check_cancel()
    assert [(r.step, r.loss, r.grad_norm, r.samples_seen) for r in hooks.records] == [
        (1, 1.0, 2.0, 4),
        (2, 1.0, 2.0, 8),
        (3, 1.0, 2.0, 12),
    ]
