"""Purging steps from update-log chunk files: the header says which steps a chunk holds, a rewrite
drops exactly the asked steps' tensors, and the readers read the rest as before."""

from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
from safetensors.torch import load as load_tensors

from tests.unit.engine_fixtures import RECIPE, digits_tensors, fresh_model
from workers.engine.amnesia import subtract_steps
from workers.engine.log_chunks import step_of, stored_steps, without_steps
from workers.engine.log_store import DirectoryLogStore
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.training import seed_everything, train
from workers.engine.update_log import ManifestReader, RecorderConfig

CONFIGS = {
    "dense": RecorderConfig(chunk_steps=4, first_epoch_gradients=["fc2"]),
    "pruned": RecorderConfig(mode="pruned", top_p=0.1, fp16=True, chunk_steps=4),
}


@pytest.fixture(scope="module", params=list(CONFIGS))
def recorded(request, tmp_path_factory):
    train_set, _ = digits_tensors()
    small = train_set.subset(torch.arange(320))  # 5 steps an epoch
    seed_everything(0)
    model = fresh_model()
    store = DirectoryLogStore(tmp_path_factory.mktemp(request.param))
    recorder = UpdateRecorder(model, small.ids, CONFIGS[request.param], store, data=small)
    train(model, small, RECIPE.model_copy(update={"epochs": 2}), progress=Progress(), observer=recorder)
    return model, recorder.finish(), store


def _purged(manifest, store, drop: set[int]):
    """The manifest and store as the service leaves them: chunks rewritten, dropped steps unindexed."""
    chunks = []
    for ref in manifest.chunks:
        data = store.read_chunk(ref)
        rewritten = without_steps(data, drop)
        if rewritten is not None:
            chunks.append(store.write_chunk(ref.index, f"{ref.kind}-purged", rewritten))
            chunks[-1] = dataclasses.replace(chunks[-1], kind=ref.kind)
    entries = [e for e in manifest.entries if e.step not in drop]
    return dataclasses.replace(manifest, entries=entries, chunks=chunks)


def test_the_header_names_the_steps_of_a_chunk(recorded):
    _model, manifest, store = recorded
    assert len(manifest.entries) == 10
    for ref in manifest.chunks:
        data = store.read_chunk(ref)
        steps = stored_steps(io.BytesIO(data))
        assert steps == {step_of(k) for k in load_tensors(data)}
        if ref.kind == "deltas":
            assert steps == {e.step for e in manifest.entries if e.chunk == ref.index}
        else:  # first-epoch gradients: the epoch-0 steps recorded with that chunk
            assert steps == {e.step for e in manifest.entries if e.grad_chunk == ref.index}


def test_a_rewrite_drops_exactly_those_steps_and_keeps_the_rest_byte_for_byte(recorded):
    _model, manifest, store = recorded
    ref = next(c for c in manifest.chunks if c.kind == "deltas" and c.index == 0)  # steps 0..3
    data = store.read_chunk(ref)
    rewritten = without_steps(data, {1, 2, 99})
    assert rewritten == without_steps(data, {2, 1})  # deterministic: the same content address
    before, after = load_tensors(data), load_tensors(rewritten)
    assert {step_of(k) for k in after} == {0, 3}
    assert set(after) == {k for k in before if step_of(k) in (0, 3)}
    for key, value in after.items():
        assert value.dtype == before[key].dtype and torch.equal(value, before[key])
    assert without_steps(data, {0, 1, 2, 3}) is None  # nothing left: the chunk goes


def test_the_readers_read_the_remaining_steps_of_a_purged_log_as_before(recorded):
    model, manifest, store = recorded
    drop = {1, 2, 6}  # 1 and 2 share a chunk with 0 and 3; 6 with 4, 5, 7
    purged = _purged(manifest, store, drop)
    original, after = ManifestReader(manifest, store), ManifestReader(purged, store)
    ids = manifest.entries[1].sample_ids
    assert set(original.steps_containing(ids)) - set(after.steps_containing(ids)) == {1, 2, 6} & set(
        original.steps_containing(ids)
    )
    remaining = [e.step for e in purged.entries]
    assert remaining == [0, 3, 4, 5, 7, 8, 9]
    for (s1, i1, v1), (s2, i2, v2) in zip(original.deltas(remaining), after.deltas(remaining), strict=True):
        assert s1 == s2 and torch.equal(v1, v2) and (i1 is None) == (i2 is None)
        assert i1 is None or torch.equal(i1, i2)
    if manifest.config.first_epoch_gradients:  # a kept first-epoch sample: the same gradient
        sample = manifest.entries[0].sample_ids[3]
        for name, g in original.first_epoch_gradients([sample]).items():
            torch.testing.assert_close(after.first_epoch_gradients([sample])[name], g)
    # amnesiac unlearning on the purged log subtracts exactly what it did on the full one
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    subtract_steps(a, original, [3, 8], Progress())
    subtract_steps(b, after, [3, 8], Progress())
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
