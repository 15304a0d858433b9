"""Where a set lives (resident on the device, or streamed from host memory batch by batch), device
setup and synchronisation: one code path on every device, so the CPU runs it with no-op moves."""

from __future__ import annotations

import torch

from tests.unit.engine_fixtures import RECIPE, digits_tensors, fresh_model
from workers.engine.checkpoints import state_equal
from workers.engine.device import setup_device, synchronize, to_host
from workers.engine.evaluation import accuracy
from workers.engine.metrics import per_sample_outputs
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors, placement
from workers.engine.training import seed_everything, train

CUDA = torch.device("cuda")


def test_placement_streams_only_what_exceeds_the_budget_of_an_accelerator():
    assert placement(10**12, torch.device("cpu"), budget_bytes=0) == "resident"  # host memory is the device
    assert placement(1000, CUDA, budget_bytes=1000) == "resident"
    assert placement(1001, CUDA, budget_bytes=1000) == "streamed"


def test_a_streamed_set_trains_and_evaluates_exactly_as_a_resident_one():
    train_set, test = digits_tensors()
    # on the CPU a streamed set's moves are no-ops: the code path is the one CUDA takes
    streamed = LabelledTensors(train_set.x, train_set.y, train_set.ids, target=torch.device("cpu"))
    assert streamed.device == train_set.device and streamed.subset(torch.arange(5)).target is None
    models = []
    for data in (train_set, streamed):
        seed_everything(0)
        models.append(train(fresh_model(), data, RECIPE.model_copy(update={"epochs": 3}), progress=Progress()))
    assert state_equal(*models)
    test_streamed = LabelledTensors(test.x, test.y, target=torch.device("cpu"))
    assert accuracy(models[0], test) == accuracy(models[1], test_streamed) > 0.5
    for a, b in zip(per_sample_outputs(models[0], test), per_sample_outputs(models[0], test_streamed), strict=True):
        assert (a == b).all()


def test_batches_cover_every_row_once_in_order():
    data = LabelledTensors(torch.arange(10.0).view(10, 1), torch.arange(10))
    assert [y.tolist() for _, y in data.batches(4)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = data.batch(torch.tensor([7, 2]))
    assert x[:, 0].tolist() == [7.0, 2.0] and y.tolist() == [7, 2]


def test_cpu_setup_changes_no_global_torch_setting():
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    assert setup_device("cpu", deterministic=False) == torch.device("cpu")
    assert setup_device("cpu", deterministic=True) == torch.device("cpu")
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    synchronize(torch.device("cpu"))  # a no-op that must not fail without CUDA
    t = torch.arange(3)
    assert to_host(t) is t  # already in host memory: no copy
