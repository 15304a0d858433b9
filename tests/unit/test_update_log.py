"""The update recorder and its log: exact amnesiac subtraction, pruning per tensor, the storage."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from tests.unit.engine_fixtures import RECIPE, digits_tensors, fresh_model
from workers.engine.amnesia import subtract_steps
from workers.engine.log_store import DirectoryLogStore
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.training import seed_everything, train
from workers.engine.update_log import ManifestReader, RecorderConfig, decode_step


@pytest.fixture(scope="module")
def data():
    return digits_tensors()


def _sgd_step(model, optimizer, x, y):
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def test_amnesiac_subtraction_is_exact_with_plain_sgd(data, tmp_path):
    """Train batch A then batch B with the recorder in your own loop; subtracting B's recorded delta
    gives the parameters of training on A alone."""
    train_set, _ = data
    seed_everything(0)
    model = fresh_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # plain SGD: no momentum carries B into later steps
    store = DirectoryLogStore(tmp_path)
    recorder = UpdateRecorder(model, train_set.ids, RecorderConfig(mode="dense"), store)
    a, b = torch.arange(0, 64), torch.arange(64, 128)
    for step, rows in enumerate((a, b)):
        recorder.before_step(model, 0, step, rows)
        _sgd_step(model, optimizer, train_set.x[rows], train_set.y[rows])
        recorder.after_step(model, 0, step, rows)
        if step == 0:
            after_a = {k: v.clone() for k, v in model.state_dict().items()}
    manifest = recorder.finish()
    store.save_manifest(manifest)

    log = ManifestReader(store.load_manifest(), store)
    forget = [train_set.ids[i] for i in b[:3].tolist()]
    assert log.steps_containing(forget) == [1]
    subtract_steps(model, log, [1], Progress())
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, after_a[key], rtol=0, atol=1e-6)
    assert log.bytes_read == manifest.stored_bytes  # both steps sit in one chunk file, read once


def test_pruned_log_keeps_fraction_p_of_every_tensor_and_reports_its_storage(data, tmp_path):
    train_set, _ = data
    small = train_set.subset(torch.arange(640))
    logs = {}
    for name, config in {
        "dense": RecorderConfig(),
        "pruned": RecorderConfig(mode="pruned", top_p=0.1, top_p_per_layer={"fc2": 0.5}),
        "pruned16": RecorderConfig(mode="pruned", top_p=0.1, fp16=True, chunk_steps=4),
    }.items():
        seed_everything(0)
        model = fresh_model()
        store = DirectoryLogStore(tmp_path / name)
        recorder = UpdateRecorder(model, small.ids, config, store)
        train(model, small, RECIPE.model_copy(update={"epochs": 2}), progress=Progress(), observer=recorder)
        logs[name] = (recorder.finish(), store)

    dense, pruned, pruned16 = (logs[k][0] for k in ("dense", "pruned", "pruned16"))
    assert len(pruned.entries) == len(dense.entries) == 20 and dense.dense_bytes == pruned.dense_bytes
    assert len([c for c in pruned16.chunks if c.kind == "deltas"]) == 5  # 20 steps, 4 per chunk file
    store = logs["pruned"][1]
    reader = ManifestReader(pruned, store)
    sizes = [math.prod(shape) for shape in pruned.param_shapes.values()]
    bounds = np.cumsum([0, *sizes])
    for step, index, values in reader.deltas(range(20)):
        assert len(index) == len(values)
        per_tensor = np.histogram(index.numpy(), bins=bounds)[0]
        for name, n, kept in zip(pruned.param_shapes, sizes, per_tensor, strict=True):
            p = 0.5 if name.startswith("fc2") else 0.1
            assert kept == math.ceil(p * n), (step, name)
    # the storage ratio to a dense log is reported; fp32 values + a bitmask stay under 15%, fp16 under 10%
    assert 0.05 < pruned.storage_ratio < 0.30 and pruned16.storage_ratio < pruned.storage_ratio
    assert ManifestReader(pruned16, logs["pruned16"][1]).storage_ratio == pruned16.storage_ratio


def test_both_sparse_encodings_round_trip():
    from workers.engine.update_log import encode_step

    torch.manual_seed(0)
    deltas = {"big": torch.randn(4000), "small": torch.randn(3, 5)}
    shapes = {"big": [4000], "small": [3, 5]}
    for p, stored in ((0.01, "index"), (0.3, "mask")):
        encoded = encode_step(7, deltas, RecorderConfig(mode="pruned", top_p=p))
        assert f"7/{stored}" in encoded
        decoded = decode_step(7, encoded, shapes)
        for name, (index, values) in decoded.items():
            flat = deltas[name].flatten()
            assert torch.equal(values, flat[index])
            k = math.ceil(p * flat.numel())
            assert set(index.tolist()) == set(torch.topk(flat.abs(), k).indices.tolist())


def test_first_epoch_gradients_are_each_samples_gradient_when_first_seen(data, tmp_path):
    train_set, _ = data
    small = train_set.subset(torch.arange(128))
    seed_everything(0)
    model = fresh_model()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    store = DirectoryLogStore(tmp_path)
    recorder = UpdateRecorder(model, small.ids, RecorderConfig(first_epoch_gradients=["fc2"]), store, data=small)
    train(model, small, RECIPE.model_copy(update={"epochs": 2}), progress=Progress(), observer=recorder)
    manifest = recorder.finish()
    reader = ManifestReader(manifest, store)
    first_step = manifest.entries[0]
    sample = first_step.sample_ids[5]
    recorded = reader.first_epoch_gradients([sample])
    assert set(recorded) == {"fc2.weight", "fc2.bias"}

    probe = fresh_model()
    probe.load_state_dict(initial)  # the state the first batch saw
    i = small.ids.index(sample)
    F.cross_entropy(probe(small.x[i : i + 1]), small.y[i : i + 1]).backward()
    torch.testing.assert_close(recorded["fc2.weight"], probe.fc2.weight.grad, rtol=1e-4, atol=1e-6)
    assert all(e.grad_chunk is None for e in manifest.entries if e.epoch == 1)
    assert manifest.gradient_bytes > 0


def test_first_epoch_gradients_of_colour_images_take_the_batched_path(tmp_path):
    """A channels-last ResNet on 3-channel images: vmap cannot batch the reshape to channels-last, so
    the recorder reshapes in the default layout for it (without that, it fell back to one backward
    pass per sample). The batched gradients equal the per-sample loop's."""
    from workers.engine.architectures import build_model
    from workers.engine.device import plain_image_inputs, prepare_model
    from workers.engine.tensors import LabelledTensors

    torch.manual_seed(0)
    model = prepare_model(build_model("resnet18", {"width": 4}, (3, 8, 8), 10), torch.device("cpu")).eval()
    data = LabelledTensors(torch.rand(6, 3, 8, 8), torch.randint(0, 10, (6,)), [f"s{i}" for i in range(6)])
    recorder = UpdateRecorder(
        model, data.ids, RecorderConfig(mode="pruned", first_epoch_gradients=["fc"]), DirectoryLogStore(tmp_path), data
    )
    owner = torch.arange(6)
    with plain_image_inputs(model):
        batched = recorder._vmap_gradients(model, data.x, data.y, owner, 6)
    looped = recorder._looped_gradients(model, data.x, data.y, owner, 6)
    assert batched.keys() == looped.keys() == {"fc.weight", "fc.bias"}
    for name in batched:
        torch.testing.assert_close(batched[name], looped[name], rtol=1e-4, atol=1e-6)
    with pytest.raises(RuntimeError):  # the reason for the context: channels-last inside vmap
        recorder._vmap_gradients(model, data.x, data.y, owner, 6)
