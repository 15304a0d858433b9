"""The verification gate's parts on their own: the membership test's bound, the relearn probe, the
policy's bounds, auto's plans, and the gate on digits (an untouched model fails, a retrained one passes)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from app.datasets.builtin import digits_arrays
from tests.unit.engine_fixtures import CONFIG, RECIPE
from workers.engine.architectures import build_model
from workers.engine.datasets import validate_arrays
from workers.engine.holdout import calibration_mask, held_out_rows, role_counts, role_of
from workers.engine.runtime import Progress, TrainingDiverged
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, train
from workers.engine.verification.gate import GateData, failed, source_utility, verify
from workers.engine.verification.membership import auc_lower_is_member, expected_half_width, membership_test
from workers.engine.verification.plan import RETRAIN, LogFacts, plan
from workers.engine.verification.policy import (
    VerificationChange,
    VerificationPolicy,
    check_change,
    effective,
    published,
)

POLICY = VerificationPolicy()


def _mia(forget, reference, **kw):
    labels = lambda n: np.zeros(n, dtype=int)  # noqa: E731
    args = dict(margin=0.05, confidence=0.95, bootstrap=500, max_rows=5000, seed=0) | kw
    return membership_test(forget, labels(len(forget)), reference, labels(len(reference)), **args)


def test_auc_counts_lower_losses_as_members_and_ties_as_half():
    assert auc_lower_is_member(np.array([0.0, 0.0]), np.array([1.0, 2.0])) == 1.0
    assert auc_lower_is_member(np.array([3.0]), np.array([1.0, 2.0])) == 0.0
    assert auc_lower_is_member(np.array([1.0]), np.array([1.0])) == 0.5


def test_the_membership_bound_passes_unseen_data_and_fails_memorised_data():
    rng = np.random.default_rng(1)
    reference = rng.exponential(1.0, 3000)
    unseen = _mia(rng.exponential(1.0, 3000), reference)
    assert unseen["passed"] and abs(unseen["excess"]) < 0.03 and unseen["statistic"] <= 0.05
    assert abs(unseen["auc_never_seen"] - 0.5) < 0.02  # the never-seen baseline of one distribution
    memorised = _mia(rng.exponential(0.5, 3000), reference)  # lower losses: the model still holds them
    assert not memorised["passed"] and memorised["excess"] > 0.1
    # the bootstrap's half-width is about the closed-form estimate auto plans with
    assert unseen["half_width"] == pytest.approx(expected_half_width(3000, 3000, 0.95), rel=0.3)


def test_a_small_forget_set_cannot_be_verified_at_the_default_margin():
    rng = np.random.default_rng(2)
    small = _mia(rng.exponential(1.0, 20), rng.exponential(1.0, 300))
    assert not small["passed"] and small["half_width"] > 0.05  # no evidence either way: no claim
    tiny = _mia(rng.exponential(1.0, 3), rng.exponential(1.0, 300))
    assert not tiny["passed"] and tiny["statistic"] is None and "too few" in tiny["note"]


def test_the_never_seen_baseline_matches_the_forget_sets_classes():
    """Class 1 is harder (higher losses): a never-seen forget set of class 1 alone scores a low AUC
    against a reference of both classes, and the class-matched baseline says the same: no excess."""
    rng = np.random.default_rng(3)
    ref = np.concatenate([rng.exponential(0.5, 1000), rng.exponential(2.0, 1000)])
    ref_labels = np.repeat([0, 1], 1000)
    forget = rng.exponential(2.0, 500)
    out = membership_test(
        forget, np.ones(500, int), ref, ref_labels, margin=0.05, confidence=0.95, bootstrap=500, max_rows=5000
    )
    assert out["auc_forget"] < 0.4 and abs(out["excess"]) < 0.05 and out["passed"]


def test_holdout_roles_are_a_stable_hash_of_the_id():
    ids = [f"s-{i}" for i in range(4000)]
    mask = calibration_mask(ids)
    assert 0.27 < mask.mean() < 0.33  # the 30% calibration part
    assert [role_of(s) for s in ids[:50]] == ["calibration" if m else "evaluation" for m in mask[:50]]
    counts = role_counts(ids)
    assert counts["calibration"] + counts["evaluation"] == 4000 and "sha256" in counts["rule"]
    split = np.array(["train", "test", "val", "test"] * 1000)
    cal, ev = (held_out_rows(split, np.array(ids), r) for r in ("calibration", "evaluation"))
    assert set(cal).isdisjoint(ev) and len(cal) + len(ev) == 3000 and not (split[np.r_[cal, ev]] == "train").any()


def test_a_request_tightens_freely_and_loosens_only_within_bounds_with_a_reason():
    assert check_change(POLICY, VerificationChange(mia_margin=0.01, confidence=0.99)) == []
    [problem] = check_change(POLICY, VerificationChange(mia_margin=0.1))
    assert "needs a reason" in problem
    assert check_change(POLICY, VerificationChange(mia_margin=0.1, reason="small cohort, legal agreed")) == []
    assert "loosest allowed" in check_change(POLICY, VerificationChange(mia_margin=0.3, reason="too strict"))[0]
    assert "loosest allowed" in check_change(POLICY, VerificationChange(confidence=0.6, reason="why not"))[0]
    assert effective(POLICY, {"mia_margin": 0.02, "reason": None}).mia_margin == 0.02
    assert published(POLICY)["thresholds"]["mia_margin"] == {
        "default": 0.05,
        "loosest": 0.15,
        "tighter_is": "lower",
        "description": VerificationPolicy.model_fields["mia_margin"].description,
    }


def test_auto_plans_fastest_first_and_retrain_last():
    log = LogFacts(mode="dense", first_epoch_gradients=True)
    steps, _ = plan(scope="class_labels", kind="classifier", log=log, forget_rows=100, reference_rows=50, policy=POLICY)
    assert [s.method for s in steps] == ["unsir", "gradient_ascent", "amnesiac", "retrain"]
    steps, _ = plan(
        scope="class_labels", kind="classifier", log=None, forget_rows=100, reference_rows=50, policy=POLICY
    )
    assert [s.method for s in steps] == ["unsir", "retrain"]
    big, _ = plan(scope="sample_ids", kind="classifier", log=log, forget_rows=2000, reference_rows=4000, policy=POLICY)
    assert [s.method for s in big] == ["gradient_ascent", "gradient_ascent", "finetune", "amnesiac", "retrain"]
    assert big[0].params == {"gradients": "first_epoch"} and big[-1] == RETRAIN
    small, notes = plan(
        scope="sample_ids", kind="classifier", log=log, forget_rows=20, reference_rows=300, policy=POLICY
    )
    assert small == [RETRAIN] and "no approximate method can be verified" in notes[0]
    lm, _ = plan(scope="sample_ids", kind="language_model", log=None, forget_rows=5, reference_rows=5, policy=POLICY)
    assert [s.method for s in lm] == ["gradient_ascent", "retrain"]


@pytest.fixture(scope="module")
def digits_split():
    ds = validate_arrays(**digits_arrays())
    tensors = lambda rows: LabelledTensors.from_arrays(ds.x[rows], ds.y[rows], ds.ids[rows].tolist())  # noqa: E731

    def fit(rows):
        seed_everything(0)
        return train(build_model("cnn_small", CONFIG, (8, 8), 10), tensors(rows), RECIPE, progress=Progress()).eval()

    return ds, tensors, fit


def _class_three(ds, tensors):
    """Forget class 3 of digits: the training rows, the forget and retain rows, the gate's data."""
    train_rows = ds.rows("train")
    forget = ds.rows("train", labels=[3])
    retain = np.setdiff1d(train_rows, forget)
    data = GateData(
        forget=tensors(forget),
        evaluation=tensors(ds.held_out("evaluation")),
        scope="class_labels",
        forget_classes=(3,),
        retain_sample=tensors(retain),
    )
    return train_rows, forget, retain, data


def test_the_gate_fails_an_untouched_model_and_passes_a_retrained_one_class_scope(digits_split):
    ds, tensors, fit = digits_split
    train_rows, forget, retain, data = _class_three(ds, tensors)
    original = fit(train_rows)
    baseline = source_utility(original, data)
    untouched = verify(copy.deepcopy(original), data, POLICY, source=baseline, recipe=RECIPE)
    assert failed(untouched) == ["class_forgetting"]
    [test] = [t for t in untouched["tests"] if t["name"] == "class_forgetting"]
    assert test["statistic"] > 0.9 and test["threshold"] == 0.01
    retrained = verify(fit(retain), data, POLICY, source=baseline, recipe=RECIPE)
    assert retrained["passed"], retrained
    assert all(t["passed"] for t in retrained["tests"])


def test_the_gate_fails_an_untouched_model_sample_scope(digits_split):
    """400 random training samples of digits: enough for the membership test to decide. The
    untouched model holds them (its bound is over the margin); retraining without them brings the
    excess down to the never-seen level."""
    ds, tensors, fit = digits_split
    train_rows = ds.rows("train")
    forget = np.sort(np.random.default_rng(0).permutation(train_rows)[:400])
    retain = np.setdiff1d(train_rows, forget)
    data = GateData(
        forget=tensors(forget),
        evaluation=tensors(ds.held_out("evaluation")),
        scope="sample_ids",
        retain_sample=tensors(retain),
    )
    original = fit(train_rows)
    baseline = source_utility(original, data)
    untouched = verify(copy.deepcopy(original), data, POLICY, source=baseline, recipe=RECIPE)
    assert "membership_inference" in failed(untouched)
    retrained = verify(fit(retain), data, POLICY, source=baseline, recipe=RECIPE)
    mia = {t["name"]: t for t in retrained["tests"]}["membership_inference"]
    before = {t["name"]: t for t in untouched["tests"]}["membership_inference"]
    assert mia["passed"] and mia["excess"] < before["excess"]


def test_the_relearn_probe_tells_rows_a_model_holds_from_rows_it_never_saw(digits_split):
    """The same rows on both sides: no gap. Training rows of the model against never-seen rows: the
    training rows are ahead along the whole curve (what a model that only hid its forget set shows)."""
    from workers.engine.verification.relearn import relearn_probe

    ds, tensors, fit = digits_split
    original = fit(ds.rows("train"))
    never = tensors(ds.held_out("evaluation"))
    same = relearn_probe(
        original, never, never, None, recipe=RECIPE, objective=_classification(), steps=10, rows=10_000, margin=0.1
    )
    assert same["passed"] and abs(same["statistic"]) < 1e-9  # the same rows on both sides: no gap
    known = tensors(ds.rows("train"))  # rows the model was trained on against rows it never saw
    probe = relearn_probe(
        original, known, never, None, recipe=RECIPE, objective=_classification(), steps=10, rows=128, margin=0.0
    )
    assert probe["statistic"] > 0 and probe["forget_curve"][0] > probe["never_seen_curve"][0]


def _classification():
    from workers.engine.objectives import CLASSIFICATION

    return CLASSIFICATION


def test_verification_is_deterministic():
    torch.manual_seed(0)
    x = torch.randn(40, 1, 8, 8)
    data = GateData(
        forget=LabelledTensors(x[:10], torch.zeros(10, dtype=torch.long)),
        evaluation=LabelledTensors(x[10:], torch.arange(30) % 2),
        scope="class_labels",
        forget_classes=(0,),
    )
    model = build_model("cnn_small", CONFIG, (8, 8), 10).eval()
    a = verify(model, data, POLICY, source=0.5, recipe=RECIPE)
    b = verify(model, data, POLICY, source=0.5, recipe=RECIPE)
    assert a == b  # deterministic


def test_text_blocks_take_their_documents_role():
    from workers.engine.text import ByteTokenizer, pack_documents

    ids = [f"doc-{i}" for i in range(200)]
    texts = ["word " * (5 + i % 40) for i in range(200)]  # 1 to several blocks per document
    blocks = pack_documents(ids, texts, ByteTokenizer(), 16, split=["train", "test"] * 100)
    cal, ev = blocks.held_out("calibration"), blocks.held_out("evaluation")
    assert set(cal).isdisjoint(ev) and len(cal) + len(ev) == int((blocks.split == "test").sum())
    for rows, role in ((cal, "calibration"), (ev, "evaluation")):
        assert {role_of(d) for d in blocks.doc_ids[rows]} == {role}  # every block of a document together


def test_an_attempt_whose_loss_diverges_hands_over_to_the_next_method(digits_split):
    """label_flip on a forget set holding a NaN pixel: its loss is NaN, so its model is garbage. The
    loop records the attempt as diverged and runs the plan's next method (retrain, on clean rows)."""
    from workers.engine.methods import UnlearningTask
    from workers.engine.verification.attempts import first_verified
    from workers.engine.verification.plan import Planned

    ds, tensors, fit = digits_split
    train_rows, forget, retain, data = _class_three(ds, tensors)
    poisoned = tensors(forget)
    poisoned.x[0, 0, 0] = float("nan")
    original = fit(train_rows)

    def new_task(model):
        return UnlearningTask(
            model=model,
            build_model=lambda: build_model("cnn_small", CONFIG, (8, 8), 10),
            recipe=RECIPE,
            forget=poisoned,
            retain=tensors(retain),
            scope="class_labels",
            num_classes=10,
            device=torch.device("cpu"),
            progress=Progress(),
            forget_classes=(3,),
        )

    outcome = first_verified(
        [Planned("label_flip"), RETRAIN],
        source=original,
        new_task=new_task,
        data=data,
        policy=POLICY,
        baseline=source_utility(original, data),
    )
    assert [a["outcome"] for a in outcome.attempts] == ["diverged", "exact"]
    assert "nan" in outcome.attempts[0]["reason"]
    assert outcome.step.method == "retrain" and outcome.guarantee == "exact"
    with pytest.raises(TrainingDiverged):  # the plan's last method diverging is the job's failure
        first_verified(
            [Planned("label_flip")],
            source=original,
            new_task=new_task,
            data=data,
            policy=POLICY,
            baseline=None,
        )
