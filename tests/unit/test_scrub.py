"""scrub at its shipped defaults on digits: a forgotten class falls to zero while the other classes
hold, a random forget set moves toward the held-out level, the teacher stays the source model, the
symmetric start is broken, nonsense params are refused. Measured on evaluation rows only (the
held-out part no method reads); the method calibrates on the other part. Figures behind the bounds:
docs/decisions/scrub.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.datasets.builtin import digits_arrays
from tests.unit.engine_fixtures import RECIPE, Recorder, fresh_model, make_task, split_by_label
from workers.engine.checkpoints import state_equal
from workers.engine.evaluation import accuracy
from workers.engine.holdout import calibration_mask
from workers.engine.methods import METHODS, MethodNotApplicable
from workers.engine.methods import scrub as scrub_module
from workers.engine.metrics import mean_loss
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, train

SCRUB = METHODS["scrub"]
FORGET_CLASS = 3


@pytest.fixture(scope="module")
def digits():
    """The fixture recipe's model, and the held-out rows split by role (calibration / evaluation)."""
    d = digits_arrays()
    held_out, calibration = d["split"] == "test", calibration_mask(d["ids"].tolist())

    def rows(mask):
        return LabelledTensors.from_arrays(d["x"][mask], d["y"][mask], d["ids"][mask])

    train_set = rows(d["split"] == "train")
    seed_everything(0)
    model = fresh_model()
    train(model, train_set, RECIPE, progress=Progress())
    return model, train_set, rows(held_out & calibration), rows(held_out & ~calibration)


def test_class_scope_forgets_the_class_and_keeps_the_others(digits):
    model, train_set, calibration, evaluation = digits
    forgotten, kept = split_by_label(evaluation, FORGET_CLASS)
    task = make_task(model, train_set, calibration, label=FORGET_CLASS)
    out = SCRUB.run(task, SCRUB.Params())
    # here, seeds 0-2: 0.0 and +0.5..+2.3 points; over 3 digits x 3 models x 3 seeds: 0.0, worst -1.4 points
    assert accuracy(model, forgotten) == 1.0
    assert accuracy(out, forgotten) <= 0.03
    assert accuracy(out, kept) >= accuracy(model, kept) - 0.02
    assert task.extra_metrics["scrub_max_steps"] > 0 and task.extra_metrics["scrub_min_steps"] > 0


def test_sample_scope_moves_the_forget_set_toward_the_held_out_level(digits):
    model, train_set, calibration, evaluation = digits
    ids = np.random.default_rng(0).choice(np.array(train_set.ids), 100, replace=False)
    task = make_task(model, train_set, calibration, forget_ids=ids)
    unseen = evaluation.subset(torch.isin(evaluation.y, torch.unique(task.forget.y)).nonzero()[:, 0])
    before = mean_loss(model, task.forget) / mean_loss(model, unseen)
    out = SCRUB.run(task, SCRUB.Params())
    after = mean_loss(out, task.forget) / mean_loss(out, unseen)
    # forget-set loss / held-out loss: 0.18 before, 0.35-0.57 over seeds 0-2 (retraining: 0.84); test
    # accuracy -0.8..+0.8 points
    assert before < 0.3 and 0.3 <= after <= 1.3
    assert accuracy(out, evaluation) >= accuracy(model, evaluation) - 0.02
    assert task.extra_metrics["calibration"]["rule"].startswith("batch")


def test_the_teacher_stays_the_source_model(digits, monkeypatch):
    model, train_set, calibration, _ = digits
    teachers, original = [], scrub_module.frozen_teacher

    def spy(source):
        teachers.append(original(source))
        return teachers[-1]

    monkeypatch.setattr(scrub_module, "frozen_teacher", spy)
    out = SCRUB.run(make_task(model, train_set, calibration, label=FORGET_CLASS), SCRUB.Params())
    (teacher,) = teachers
    assert state_equal(teacher, model) and not state_equal(out, model)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


def test_the_first_max_step_breaks_the_symmetric_start(digits):
    """The student starts equal to the teacher, where KL's gradient is zero: the public code's first
    max step moves nothing; the default first step ascends the cross-entropy instead."""
    model, train_set, calibration, _ = digits
    first = {}
    for name in ("cross_entropy_ascent", "none"):
        hooks = Recorder()
        params = {"first_step": name, "optimizer": "sgd", "weight_decay": 0.0, "epochs": 1}
        SCRUB.run(make_task(model, train_set, calibration, label=FORGET_CLASS, hooks=hooks), SCRUB.parse_params(params))
        first[name] = hooks.records[0]
        assert first[name].phase == "max"
    # zero up to rounding
    assert first["none"].grad_norm < 1e-4 * first["cross_entropy_ascent"].grad_norm


def test_both_scopes_classifiers_only():
    SCRUB.check_applicable("sample_ids", has_update_log=False)
    SCRUB.check_applicable("class_labels", has_update_log=False)
    with pytest.raises(MethodNotApplicable, match="needs a classifier"):
        SCRUB.check_applicable("sample_ids", has_update_log=False, kind="language_model")


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": 0},
        {"alpha": -1},
        {"gamma": -0.1},
        {"lr": 0},
        {"epochs": 0},
        {"epochs": 2, "max_epochs": 3},
        {"retain_per_forget": -1},
        {"forget_batch_size": 0},
        {"retain_batch_size": 0},
        {"momentum": 1.0},
        {"optimizer": "rmsprop"},
        {"first_step": "noise"},
        {"seed": -1},
    ],
)
def test_out_of_range_params_are_refused(bad):
    with pytest.raises(ValueError):
        SCRUB.parse_params(bad)


def test_the_public_settings_stay_expressible():
    params = SCRUB.parse_params(
        {
            "optimizer": "sgd",
            "lr": 5e-4,
            "max_epochs": 2,
            "calibrated": False,
            "first_step": "none",
            "final_max_pass": False,
            "retain_per_forget": 1000,
            "retain_batch_size": 128,
        }
    )
    assert params.epochs == 3 and params.temperature == 4 and params.alpha == 0.001 and params.gamma == 0.99
