from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from workers.engine import architectures
from workers.engine.architectures import ArchitectureError, build_model, expected_tensors


@pytest.mark.parametrize("name", ["mlp", "cnn_small", "resnet18"])
@pytest.mark.parametrize("shape", [(8, 8), (1, 28, 28), (3, 32, 32)])
def test_every_architecture_builds_for_images(name, shape):
    config = {"width": 8} if name == "resnet18" else {}
    model = build_model(name, config, shape, 7)
    assert model(torch.zeros(5, *shape)).shape == (5, 7)
    shapes = expected_tensors(name, config, shape, 7)
    assert shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_resnet18_width_is_configurable_and_cifar_style():
    small = build_model("resnet18", {"width": 8}, (3, 32, 32), 10)
    wide = build_model("resnet18", {"width": 16}, (3, 32, 32), 10)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 3.5 < n(wide) / n(small) < 4.1  # conv weights scale with width squared
    assert small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert [len(layer) for layer in (small.layer1, small.layer2, small.layer3, small.layer4)] == [2, 2, 2, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in small.modules()) == 20


def test_conv_nets_refuse_flat_rows_and_unknown_names_list_the_choices():
    with pytest.raises(ArchitectureError, match="image inputs"):
        build_model("cnn_small", {}, (64,), 10)
    assert build_model("mlp", {}, (64,), 10)(torch.zeros(2, 64)).shape == (2, 10)
    with pytest.raises(ArchitectureError, match="available: cnn_small, gpt2, mlp, resnet18"):
        build_model("vgg", {}, (8, 8), 10)


def test_configs_are_validated():
    with pytest.raises(ValidationError):
        architectures.parse_config("cnn_small", {"channels": [0]})
    with pytest.raises(ValidationError):
        architectures.parse_config("mlp", {"hidden": [16], "surprise": 1})
    with pytest.raises(ValidationError):
        architectures.parse_config("resnet18", {"width": 1024})


def test_entry_point_architectures_join_the_registry(monkeypatch):
    from workers.engine.architectures import Architecture, base
    from workers.engine.architectures.mlp import MLPConfig, build_mlp

    extra = Architecture("tiny_mlp", "a plugin", MLPConfig, build_mlp)

    class EP:
        name, value = "tiny_mlp", "plugin:TINY"

        def load(self):
            return extra

    class Clash(EP):
        name = "mlp"

    monkeypatch.setattr(architectures, "entry_points", lambda group: [EP(), Clash()])
    architectures.registry.cache_clear()
    try:
        reg = architectures.registry()
        assert reg["tiny_mlp"] is extra and reg["mlp"] is not extra  # a plugin cannot replace a built-in
    finally:
        architectures.registry.cache_clear()
    assert issubclass(MLPConfig, base.ArchitectureConfig)
