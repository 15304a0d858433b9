"""Sizes and settings: the full run on tiny Shakespeare, and a quick one on generated text for tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.language_models.corpus import generated_documents, shakespeare_documents
from workers.engine.recipe import TrainingRecipe
from workers.engine.update_log import RecorderConfig

EMBEDDING = ["transformer.wte"]  # the token embedding (tied to the output layer: one tensor)
ALL_LAYERS = ["transformer"]  # every parameter (lm_head is the tied wte, not a parameter of its own)


@dataclass(frozen=True)
class Variant:
    label: str
    method: str
    params: dict[str, Any]
    layers: str = "-"  # what the report calls the layer restriction
    gradients: str = "-"


def variants(ascent: dict[str, Any]) -> list[Variant]:
    """Every method the issue asks for, gradient ascent per gradient source and layer restriction."""
    out = [Variant("finetune", "finetune", {"epochs": 1})]
    for layers, names in (("embedding", EMBEDDING), ("all", ALL_LAYERS)):
        for gradients in ("first_epoch", "current"):
            params = {**ascent, "gradients": gradients, "layers": names}
            out.append(Variant(f"gradient_ascent {gradients} {layers}", "gradient_ascent", params, layers, gradients))
    return out


@dataclass
class Profile:
    name: str
    load_texts: Callable[[], list[str]]
    arch: dict[str, Any]
    recipe: TrainingRecipe
    log: RecorderConfig
    ascent: dict[str, Any] = field(default_factory=dict)
    fmt: str = "the secret code is ####"
    inserted: int = 20
    forgotten: int = 10
    never_inserted: int = 20
    repeats: int = 48  # documents holding each canary
    pretrain_epochs: int = 0  # prose-only epochs of a base model the original is trained from
    eval_blocks: int = 256  # retain / held-out blocks the perplexities are measured on
    seed: int = 0
    source: str = ""

    @property
    def variants(self) -> list[Variant]:
        return variants(self.ascent)


def shakespeare(path: Path, max_chars: int | None = None) -> Profile:
    return Profile(
        name="tinyshakespeare",
        load_texts=lambda: shakespeare_documents(path, doc_chars=2_000, max_chars=max_chars),
        arch={"n_layer": 4, "n_head": 4, "n_embd": 160, "context_length": 128},
        recipe=TrainingRecipe(optimizer="adamw", lr=2e-3, epochs=2, batch_size=32, seed=0),
        log=RecorderConfig(mode="pruned", top_p=0.01, fp16=True, chunk_steps=256, first_epoch_gradients=EMBEDDING),
        pretrain_epochs=4,
        ascent={"probe_samples": 64, "batch_size": 16, "lr": 0.02},
        source=str(path),
    )


def quick() -> Profile:
    return Profile(
        name="quick",
        load_texts=lambda: generated_documents(60, 60, seed=0),
        arch={"n_layer": 2, "n_head": 2, "n_embd": 64, "context_length": 64},
        recipe=TrainingRecipe(optimizer="adamw", lr=2e-3, epochs=6, batch_size=16, seed=0),  # 3e-3 stalls
        log=RecorderConfig(mode="pruned", top_p=0.01, fp16=True, chunk_steps=256, first_epoch_gradients=EMBEDDING),
        inserted=8,
        forgotten=4,
        never_inserted=8,
        repeats=6,
        ascent={"lr": 0.05, "max_epochs": 100},
        eval_blocks=64,
        source="generated",
    )
