"""A model's training recipe: what retraining reproduces exactly."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    import torch


class TrainingRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["sgd", "adam", "adamw"] = Field("sgd", description="Optimizer.")
    lr: float = Field(0.05, gt=0, le=10, description="Learning rate.")
    epochs: int = Field(5, ge=1, le=1000, description="Passes over the training split.")
    batch_size: int = Field(64, ge=1, le=65536, description="Samples per batch.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seeds initialisation and shuffling.")
    momentum: float = Field(0.0, ge=0, lt=1, description="SGD momentum (ignored by Adam/AdamW).")
    weight_decay: float = Field(0.0, ge=0, le=1, description="L2 penalty / decoupled weight decay.")
    lr_schedule: Literal["constant", "linear_decay"] = Field(
        "constant",
        description="constant, or linear_decay: the learning rate falls linearly to 0 over the run's batches "
        "(better accuracy from few epochs).",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32",
        description="fp32, or bf16: the forward pass and loss run under bfloat16 autocast (faster on GPUs with "
        "bf16 tensor cores); weights, optimiser state and checkpoints stay float32.",
    )


def autocast(recipe: TrainingRecipe, device: torch.device):
    """The recipe's precision for a forward pass and loss on ``device`` (backward runs outside it)."""
    import torch

    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=recipe.precision == "bf16")


def make_optimizer(params, recipe: TrainingRecipe, lr: float | None = None) -> torch.optim.Optimizer:
    import torch  # here, not at the top: the API validates recipes without torch

    lr = recipe.lr if lr is None else lr
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=recipe.weight_decay)
