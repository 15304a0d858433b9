"""Completeness of an update log: steps that left it are marked subtracted or purged, a sample's
missing steps are counted, and amnesiac / first-epoch gradient ascent refuse an incomplete log
instead of subtracting or averaging what is left."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.unit.engine_fixtures import RECIPE, digits_tensors, fresh_model, make_task
from workers.engine.log_store import DirectoryLogStore
from workers.engine.methods import METHODS, MethodNotApplicable
from workers.engine.methods.base import IncompleteUpdateLog
from workers.engine.methods.gradient_ascent import _first_epoch_direction, _recorded_gradients
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.training import document_batches, seed_everything, shuffled_batches, steps_per_epoch_of, train
from workers.engine.update_log import ManifestReader, RecorderConfig

EPOCHS = 2  # 320 samples, batch 64: 5 steps an epoch


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    train_set, test = digits_tensors()
    small = train_set.subset(torch.arange(320))
    seed_everything(0)
    model = fresh_model()
    store = DirectoryLogStore(tmp_path_factory.mktemp("log"))
    config = RecorderConfig(chunk_steps=4, first_epoch_gradients=["fc2"])
    recorder = UpdateRecorder(model, small.ids, config, store, data=small)
    train(model, small, RECIPE.model_copy(update={"epochs": EPOCHS}), progress=Progress(), observer=recorder)
    return model, recorder.finish(), store, small, test


@pytest.fixture
def reader(recorded):
    """A fresh reader per test: consume and purge mark steps in memory."""
    _model, manifest, store, _small, _test = recorded
    return ManifestReader(manifest, store)


def _entry(manifest, epoch: int, batch: int):
    return next(e for e in manifest.entries if e.epoch == epoch and e.batch == batch)


def _same(model, state) -> bool:
    return all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def _task(recorded, reader, ids):
    model, _manifest, _store, small, test = recorded
    return make_task(model, small, test, forget_ids=ids, log=reader)


def test_every_sample_is_in_one_step_per_epoch_and_a_document_in_ceil_rows_over_batch():
    n, bs = 203, 64  # a last, partial batch
    seen = torch.zeros(n, dtype=torch.long)
    for rows in shuffled_batches(n, bs, torch.Generator().manual_seed(0)):
        seen[rows] += 1
    assert bool((seen == 1).all())
    assert steps_per_epoch_of([f"s{i}" for i in range(n)], bs, group_by_ids=False) == {f"s{i}": 1 for i in range(n)}

    sizes = {"a": 1, "b": 4, "c": 5, "d": 9, "e": 12, "f": 3, "g": 4}
    ids = [d for d, k in sizes.items() for _ in range(k)]
    expected = steps_per_epoch_of(ids, 4, group_by_ids=True)
    assert expected == {"a": 1, "b": 1, "c": 2, "d": 3, "e": 3, "f": 1, "g": 1}
    for seed in range(5):
        held: dict[str, int] = {}
        for rows in document_batches(ids, 4, torch.Generator().manual_seed(seed)):
            for doc in {ids[r] for r in rows.tolist()}:
                held[doc] = held.get(doc, 0) + 1
        assert held == expected, seed


def test_a_fresh_log_covers_every_training_sample(recorded, reader):
    _model, manifest, _store, small, _test = recorded
    assert reader.epochs == EPOCHS
    c = reader.coverage(small.ids)
    assert c.complete and c.samples == 320 and c.steps_live == len(manifest.entries) == 10
    assert (c.steps_subtracted, c.steps_purged, c.steps_unrecorded, c.samples_erased) == (0, 0, 0, 0)


def test_consumed_steps_count_as_subtracted_and_purged_ones_as_missing(recorded, reader):
    _model, manifest, _store, _small, _test = recorded
    a, b = _entry(manifest, 0, 0).sample_ids[:2]  # share their first-epoch step
    reader.consume(reader.steps_containing([a]))
    c = reader.coverage([a, b])
    assert c.complete and c.steps_subtracted == EPOCHS and c.steps_live <= 1
    assert c.samples_subtracted == 2 and c.samples_missing == 0

    erased = _entry(manifest, 0, 3).sample_ids[0]  # erased by a method that does not subtract
    other = _entry(manifest, 0, 3).sample_ids[1]
    purged = reader.purge([erased])
    assert len(purged) == EPOCHS and not reader.steps_containing([erased])
    c = reader.coverage([other])
    assert not c.complete and c.steps_purged >= 1 and c.samples_purged == c.samples_missing == 1
    assert c.steps_missing == c.steps_purged
    # the erased sample itself: no rows left, tombstoned: erased already, not missing
    c = reader.coverage([erased])
    assert c.complete and c.samples_erased == 1 and c.steps_live == c.steps_purged == 0


def test_steps_the_log_never_recorded_are_missing(recorded):
    _model, manifest, store, _small, _test = recorded
    dropped = _entry(manifest, 1, 2)
    partial = ManifestReader(
        dataclasses.replace(manifest, entries=[e for e in manifest.entries if e != dropped]), store
    )
    c = partial.coverage([dropped.sample_ids[0], "never-seen"])
    assert c.steps_unrecorded == 1 + EPOCHS and c.samples_unrecorded == c.samples_missing == 2
    assert c.steps_purged == 0 and not c.complete


def test_amnesiac_refuses_a_log_an_earlier_erasure_purged_and_says_how_much(recorded, reader):
    _model, manifest, _store, _small, _test = recorded
    batch = _entry(manifest, 0, 3).sample_ids
    reader.purge([batch[0]])
    task = _task(recorded, reader, [batch[1], batch[2], _entry(manifest, 0, 0).sample_ids[0]])
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    for name in ("amnesiac", "partial_amnesiac"):
        with pytest.raises(IncompleteUpdateLog) as raised:
            METHODS[name].run(task, METHODS[name].parse_params({"repair_epochs": 0}))
        err = raised.value
        assert isinstance(err, MethodNotApplicable)
        assert err.samples_checked == 3 and err.samples_missing == err.samples_purged == 2
        assert err.steps_purged == err.steps_missing >= 1 and err.steps_unrecorded == 0
        assert "2 of 3 forget samples" in str(err) and "purged by an earlier erasure" in str(err)
        assert batch[1] not in str(err)  # counts, never sample IDs
        assert err.counts()["steps_purged"] == err.steps_purged and err.counts()["missing"] == "steps"
    assert _same(task.model, before) and not task.consumed_log_steps


def test_amnesiac_again_on_subtracted_steps_is_complete_and_subtracts_nothing(recorded, reader):
    _model, manifest, _store, _small, _test = recorded
    a = _entry(manifest, 0, 1).sample_ids[0]
    first = _task(recorded, reader, [a])
    METHODS["amnesiac"].run(first, METHODS["amnesiac"].parse_params({"repair_epochs": 0}))
    assert first.extra_metrics["update_log_steps_removed"] == EPOCHS
    reader.consume(first.consumed_log_steps)

    again = _task(recorded, reader, [a])  # before the purge: its rows are there, marked subtracted
    before = {k: v.clone() for k, v in again.model.state_dict().items()}
    METHODS["amnesiac"].run(again, METHODS["amnesiac"].parse_params({"repair_epochs": 0}))
    assert again.extra_metrics["update_log_steps_removed"] == 0
    assert again.extra_metrics["update_log_steps_subtracted_before"] == EPOCHS
    assert _same(again.model, before)

    reader.purge([a])  # after the purge: no rows, erased
    again = _task(recorded, reader, [a])
    METHODS["amnesiac"].run(again, METHODS["amnesiac"].parse_params({"repair_epochs": 0}))
    assert again.extra_metrics["update_log_steps_removed"] == 0
    assert again.extra_metrics["update_log_samples_erased_before"] == 1


def test_first_epoch_ascent_refuses_missing_gradients_and_never_averages_zeros(recorded, reader):
    _model, manifest, _store, _small, _test = recorded
    params = METHODS["gradient_ascent"].parse_params({"gradients": "first_epoch", "max_epochs": 1})
    step0 = _entry(manifest, 0, 2).sample_ids
    reader.purge([step0[0]])  # its first-epoch step: purged
    with pytest.raises(IncompleteUpdateLog) as raised:
        METHODS["gradient_ascent"].run(_task(recorded, reader, [step0[1], step0[2]]), params)
    err = raised.value
    assert err.gradients and err.samples_missing == err.samples_purged == 2 and err.steps_purged == 1
    assert "first-epoch gradients are incomplete for 2 of 2" in str(err)
    assert err.counts()["missing"] == "first_epoch_gradients"

    subtracted = _entry(manifest, 0, 4).sample_ids
    reader.consume(reader.steps_containing([subtracted[0]]))  # its gradient left with the subtracted step
    with pytest.raises(IncompleteUpdateLog) as raised:
        METHODS["gradient_ascent"].run(_task(recorded, reader, [subtracted[1]]), params)
    assert raised.value.steps_subtracted == 1 and raised.value.samples_missing == 1


def test_the_first_epoch_mean_is_over_the_samples_whose_gradients_were_summed(recorded, reader):
    _model, manifest, _store, _small, _test = recorded
    erased = _entry(manifest, 0, 1).sample_ids[0]
    reader.consume(reader.steps_containing([erased]))
    reader.purge([erased])  # erased earlier by amnesiac: no rows, tombstoned
    fresh = [_entry(manifest, 0, 3).sample_ids[i] for i in range(2)]  # untouched steps
    task = _task(recorded, reader, [erased, *fresh])
    params = METHODS["gradient_ascent"].parse_params({"gradients": "first_epoch"})
    recorded_grads = _recorded_gradients(task, params)
    assert recorded_grads.samples == recorded_grads.rows == 2
    allowed = {n: p for n, p in task.model.named_parameters() if n.startswith("fc2.")}
    direction = _first_epoch_direction(task, recorded_grads, task.forget, allowed)
    want = reader.first_epoch_gradients(fresh)
    for name, d in direction.items():
        torch.testing.assert_close(d, want[name] / 2)
    assert task.extra_metrics["gradient_source"] == "recorded_first_epoch"
    assert task.extra_metrics["gradient_source_samples"] == 2


def test_gradient_source_says_what_was_used_and_why(recorded, reader):
    _model, manifest, store, _small, _test = recorded
    ids = _entry(manifest, 0, 0).sample_ids[:4]
    run = METHODS["gradient_ascent"].run

    def metrics(log, **params):
        task = _task(recorded, log, ids)
        run(task, METHODS["gradient_ascent"].parse_params({"max_epochs": 1, **params}))
        return task.extra_metrics

    m = metrics(reader, gradients="first_epoch")
    assert m["gradient_source"] == "recorded_first_epoch" and m["gradient_source_samples"] == 4
    m = metrics(reader, gradients="first_epoch", layers=["conv1"])
    assert (
        m["gradient_source"] == "current_model_at_start" and "not of the chosen layers" in m["gradient_source_reason"]
    )
    no_grads = dataclasses.replace(manifest, config=manifest.config.model_copy(update={"first_epoch_gradients": None}))
    m = metrics(ManifestReader(no_grads, store), gradients="first_epoch")
    assert m["gradient_source"] == "current_model_at_start"
    assert m["gradient_source_reason"] == "the update log records no first-epoch gradients"
    m = metrics(None, gradients="first_epoch")
    assert m["gradient_source_reason"] == "the model has no update log"
    assert metrics(reader)["gradient_source"] == "current_each_step"
    reader.consume(reader.steps_containing(ids))
    reader.purge(ids)
    m = metrics(reader, gradients="first_epoch")
    assert m["gradient_source"] == "current_model_at_start" and "erased earlier" in m["gradient_source_reason"]
