"""The API process runs without torch: importing it, building the app and its OpenAPI document load
neither torch nor transformers (which imports torch), and the torch-free catalogs say what the engine does."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from tests.processes import ROOT
from workers.engine import architectures
from workers.engine.architectures.catalog import gpt2_vocab_size
from workers.engine.checkpoints import stored_state
from workers.engine.methods import METHODS
from workers.engine.methods.catalog import SPECS
from workers.engine.text import BpeTokenizer

PROBE = """
import json, sys
from app.main import create_app
app = create_app()
schema = app.openapi()  # every route's models: the method params, architecture configs, recorder spec
import workers.engine.methods.catalog, workers.engine.architectures, workers.engine.log_manifest
import workers.engine.recipe, workers.engine.text
from workers.engine.architectures import expected_tensors
shapes = expected_tensors("gpt2", {"n_layer": 1}, (16,), 300)
print(json.dumps({"loaded": [m for m in ("torch", "transformers") if m in sys.modules], "paths": len(schema["paths"]),
                  "tensors": len(shapes), "modules": len(sys.modules)}))
"""


def test_the_api_imports_builds_and_lays_out_models_without_torch(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNLEARND_")}
    env["UNLEARND_DATABASE_URL"] = f"sqlite:///{tmp_path / 'probe.db'}"  # built but never connected to
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    assert probe["loaded"] == []
    assert probe["paths"] > 30 and probe["tensors"] == 16 and probe["modules"] > 500  # the probe did run


def test_every_method_implements_its_catalog_entry():
    assert list(METHODS) == list(SPECS)
    for name, spec in SPECS.items():
        assert isinstance(METHODS[name], type(spec)) and METHODS[name].Params is spec.Params


CONFIGS = [
    ("mlp", {"hidden": []}, (8, 8), 3),
    ("mlp", {"hidden": [5, 7, 9], "dropout": 0.5}, (3, 4, 5), 11),
    ("cnn_small", {"channels": [3, 5, 7, 9], "hidden": 13}, (1, 9, 7), 4),
    ("cnn_small", {"channels": [2]}, (1, 1), 2),
    ("resnet18", {"width": 4}, (8, 8), 5),
    ("resnet18", {"width": 12}, (3, 5, 5), 2),
    ("gpt2", {}, (128,), 257),
    ("gpt2", {"n_layer": 3, "n_head": 4, "n_embd": 32, "context_length": 16}, (9,), 1000),
]


@pytest.mark.parametrize(("name", "config", "shape", "classes"), CONFIGS)
def test_layouts_match_the_built_models(name, config, shape, classes):
    with torch.device("meta"):
        built = stored_state(architectures.build_model(name, config, shape, classes))
    assert architectures.expected_tensors(name, config, shape, classes) == {k: tuple(v.shape) for k, v in built.items()}


@pytest.mark.parametrize(
    ("name", "shape", "classes", "error"),
    [
        ("cnn_small", (64,), 10, "image inputs"),
        ("resnet18", (2, 3, 4, 5), 10, "image inputs"),
        ("gpt2", (129,), 257, "context_length"),
        ("gpt2", (16, 2), 257, "context_length"),
        ("gpt2", (16,), 1, "vocabulary"),
    ],
)
def test_layouts_refuse_what_building_refuses(name, shape, classes, error):
    for make in (architectures.build_model, architectures.expected_tensors):
        with pytest.raises(architectures.ArchitectureError, match=error):
            make(name, {}, shape, classes)


@pytest.mark.parametrize("with_eos", [False, True])
def test_bpe_vocabulary_size_without_transformers_is_the_tokenizers(tmp_path, with_eos):
    tokens = ["h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "hell", "hello"] + ["<|endoftext|>"] * with_eos
    (tmp_path / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh e\nl l\nhe ll\nhell o\n")
    files = {"bpe_vocab_path": str(tmp_path / "vocab.json"), "bpe_merges_path": str(tmp_path / "merges.txt")}
    size = gpt2_vocab_size({"tokenizer": "bpe", **files})
    assert (
        size
        == BpeTokenizer(**{"vocab_path": files["bpe_vocab_path"], "merges_path": files["bpe_merges_path"]}).vocab_size
    )
    assert size == 13 and gpt2_vocab_size({}) == 257
    (tmp_path / "vocab.json").write_text("not json")
    with pytest.raises(Exception):  # noqa: B017  (the API answers any failure with 422 "Unusable tokenizer files")
        gpt2_vocab_size({"tokenizer": "bpe", **files})
