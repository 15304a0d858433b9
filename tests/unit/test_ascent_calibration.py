"""gradient_ascent's recalibrated stopping rule measures the held-out loss every recalibrate_every
steps, on a fixed seeded subset of calibration_samples held-out rows (the rows a method may read)."""

from __future__ import annotations

import pytest
import torch

from tests.unit.engine_fixtures import RECIPE, digits_tensors, fresh_model, make_task
from workers.engine.methods import METHODS, gradient_ascent
from workers.engine.runtime import Progress
from workers.engine.training import seed_everything, train

GA = METHODS["gradient_ascent"]


@pytest.fixture(scope="module")
def digits():
    train_set, held_out = digits_tensors()
    seed_everything(0)
    return train(fresh_model(), train_set, RECIPE, progress=Progress()), train_set, held_out


def _measured(monkeypatch, model, train_set, held_out, params):
    """Run 10 ascent steps (the forget probe never reaches the target); return the task and every
    held-out set whose loss the stopping rule measured."""
    task = make_task(model, train_set, held_out, forget_ids=train_set.ids[:40])
    measured = []
    real = gradient_ascent.mean_loss

    def spy(model, data, objective):
        if data is task.forget:  # the probe: never at the target, so every check runs
            return float("-inf")
        measured.append(data)
        return real(model, data, objective)

    monkeypatch.setattr(gradient_ascent, "mean_loss", spy)
    params = {"recalibrate": True, "max_epochs": 1, "batch_size": 4, "lr": 0.001, **params}
    GA.run(task, GA.parse_params(params))
    assert task.extra_metrics["ascent_steps"] == 10
    return task, measured


def test_the_held_out_loss_is_measured_on_a_seeded_subset_at_the_interval(monkeypatch, digits):
    model, train_set, held_out = digits
    task, unseen = _measured(
        monkeypatch, model, train_set, held_out, {"calibration_samples": 16, "recalibrate_every": 3}
    )
    assert {id(d) for d in unseen} == {id(unseen[0])}  # one fixed subset throughout
    assert len(unseen[0]) == 16 == task.extra_metrics["calibration"]["holdout_samples"]
    assert len(unseen) == 1 + 10 // 3  # at the start, then at steps 3, 6 and 9
    # its rows are held-out rows of the forget set's classes (the only held-out rows a method gets)
    same = (unseen[0].x[:, None] == held_out.x[None]).flatten(2).all(2)
    rows = same.float().argmax(1)
    assert same.any(1).all() and torch.isin(held_out.y[rows], task.forget.y).all()
    # the same seed picks the same subset
    _, again = _measured(monkeypatch, model, train_set, held_out, {"calibration_samples": 16, "recalibrate_every": 3})
    assert torch.equal(again[0].x, unseen[0].x)


def test_the_defaults_measure_every_held_out_row_at_every_check(monkeypatch, digits):
    model, train_set, held_out = digits
    task, unseen = _measured(monkeypatch, model, train_set, held_out, {})
    like_forget = task.holdout_like_forget()
    assert len(like_forget) < 512 and all(torch.equal(d.x, like_forget.x) for d in unseen)
    assert len(unseen) == 1 + 10  # at the start, then at every step
