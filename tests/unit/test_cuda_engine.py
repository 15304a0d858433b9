"""The engine on CUDA against the CPU: training and unlearning reach the same results within stated
tolerances, a streamed set gives exactly what a resident one does, the recorder prunes on the device
exactly as on the CPU, and bf16 training works. Skipped without CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.unit.engine_fixtures import RECIPE, Recorder, digits_tensors, fresh_model, make_task
from workers.engine.checkpoints import state_equal
from workers.engine.device import prepare_model, setup_device
from workers.engine.evaluation import accuracy
from workers.engine.log_store import DirectoryLogStore
from workers.engine.methods import METHODS
from workers.engine.metrics import weight_distance
from workers.engine.parameters import select_parameters
from workers.engine.recorder import Observers, UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.training import seed_everything, train
from workers.engine.update_log import ManifestReader, RecorderConfig, decode_flat, encode_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
MAX_ACCURACY_GAP = 0.02  # CUDA against CPU: at most 2 points on the test digits
MAX_WEIGHT_DISTANCE = 0.05  # ||theta_cuda - theta_cpu|| / ||theta_cpu|| after training or unlearning
FORGET_CLASS = 3


@pytest.fixture(scope="module", autouse=True)
def deterministic_cuda():
    """Deterministic mode: float32 kernels (no TF32), the same bits run after run."""
    setup_device("cuda", deterministic=True)


@pytest.fixture(scope="module")
def digits():
    return digits_tensors()


def _trained(device: torch.device, train_set, recipe=RECIPE, budget_bytes=None, hooks=None):
    seed_everything(0)
    model = prepare_model(fresh_model(), device)  # initialised on the CPU: the same weights on both devices
    data = train_set.placed(device, budget_bytes)
    return train(model, data, recipe, progress=Progress(hooks))


@pytest.fixture(scope="module")
def on_both(digits):
    train_set, _ = digits
    hooks = Recorder()
    return {CPU.type: _trained(CPU, train_set), CUDA.type: _trained(CUDA, train_set, hooks=hooks), "hooks": hooks}


def _close(cuda_model, cpu_model, test) -> None:
    on_cpu = copy.deepcopy(cuda_model).to(CPU)
    assert abs(accuracy(on_cpu, test) - accuracy(cpu_model, test)) <= MAX_ACCURACY_GAP
    assert weight_distance(on_cpu, cpu_model) <= MAX_WEIGHT_DISTANCE


def test_training_on_cuda_matches_the_cpu(digits, on_both):
    _, test = digits
    assert accuracy(on_both["cpu"], test) > 0.9
    _close(on_both["cuda"], on_both["cpu"], test)
    records = on_both["hooks"].records  # settled in groups on CUDA: still every step, in order, as floats
    assert [r.step for r in records] == list(range(1, len(records) + 1)) and len(records) > 100
    assert all(type(r.loss) is float and type(r.grad_norm) is float for r in records)


@pytest.mark.parametrize("name,params", [("label_flip", {"lr": 0.01, "retain_batches": 2}), ("gradient_ascent", {})])
def test_unlearning_on_cuda_matches_the_cpu(digits, on_both, name, params):
    train_set, test = digits
    source = on_both["cpu"]
    out = {}
    for device in (CPU, CUDA):
        task = make_task(source, train_set, test, label=FORGET_CLASS)
        task.model = prepare_model(task.model, device)  # the same source weights on both devices
        task.forget, task.retain, task.holdout = (d.placed(device) for d in (task.forget, task.retain, task.holdout))
        task.device = device
        out[device.type] = METHODS[name].run(task, METHODS[name].parse_params(params))
    forgotten = test.subset((test.y == FORGET_CLASS).nonzero()[:, 0])
    assert accuracy(copy.deepcopy(out["cuda"]).to(CPU), forgotten) <= accuracy(out["cpu"], forgotten) + 0.05
    _close(out["cuda"], out["cpu"], test)


def test_a_streamed_set_gives_exactly_what_a_resident_one_gives(digits):
    train_set, test = digits
    recipe = RECIPE.model_copy(update={"epochs": 2})
    resident = _trained(CUDA, train_set, recipe)
    streamed = _trained(CUDA, train_set, recipe, budget_bytes=0)  # every row from pinned host memory
    assert state_equal(resident, streamed)
    streamed_test = test.placed(CUDA, budget_bytes=0)
    assert streamed_test.target is not None and streamed_test.x.is_pinned()
    assert accuracy(resident, test.placed(CUDA)) == accuracy(resident, streamed_test)


def test_the_recorder_prunes_on_cuda_exactly_as_the_cpu_would(digits, tmp_path):
    train_set, _ = digits
    small = train_set.subset(torch.arange(256))
    seed_everything(0)
    model = prepare_model(fresh_model(), CUDA)
    data = small.placed(CUDA)
    pruned_config = RecorderConfig(mode="pruned", top_p=0.05, chunk_steps=3)
    dense = UpdateRecorder(model, small.ids, RecorderConfig(mode="dense"), DirectoryLogStore(tmp_path / "dense"))
    pruned = UpdateRecorder(model, small.ids, pruned_config, DirectoryLogStore(tmp_path / "pruned"))
    train(model, data, RECIPE.model_copy(update={"epochs": 1}), progress=Progress(), observer=Observers(dense, pruned))
    dense_log = ManifestReader(dense.finish(), DirectoryLogStore(tmp_path / "dense"))
    pruned_log = ManifestReader(pruned.finish(), DirectoryLogStore(tmp_path / "pruned"))
    sizes = {n: p.numel() for n, p in select_parameters(model).items()}
    steps = list(range(len(dense_log.manifest.entries)))
    stored = {step: (index, values) for step, index, values in pruned_log.deltas(steps)}
    assert len(stored) == len(steps) == 4
    for step, _, flat in dense_log.deltas(steps):  # the exact deltas CUDA computed, as float32 on the CPU
        deltas = dict(zip(sizes, flat.split(list(sizes.values())), strict=True))
        expected_index, expected_values = decode_flat(step, encode_step(step, deltas, pruned_config), flat.numel())
        index, values = stored[step]
        assert torch.equal(index, expected_index) and torch.equal(values, expected_values), step


def test_bf16_training_on_cuda(digits):
    train_set, test = digits
    fp32 = _trained(CUDA, train_set)
    bf16 = _trained(CUDA, train_set, RECIPE.model_copy(update={"precision": "bf16"}))
    assert {p.dtype for p in bf16.parameters()} == {torch.float32}
    assert accuracy(bf16, test.placed(CUDA)) > 0.9
    assert abs(accuracy(bf16, test.placed(CUDA)) - accuracy(fp32, test.placed(CUDA))) <= 0.03


def test_fast_mode_lets_cudnn_autotune_and_matmuls_use_tf32():
    try:
        setup_device("cuda", deterministic=False)
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        assert torch.get_float32_matmul_precision() == "high" and not torch.are_deterministic_algorithms_enabled()
    finally:
        setup_device("cuda", deterministic=True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
