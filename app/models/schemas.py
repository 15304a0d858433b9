from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.validation import SafeName
from workers.engine.log_manifest import RecorderConfig
from workers.engine.recipe import TrainingRecipe


class ModelSpec(BaseModel):
    """What a model is: architecture (from GET /v1/architectures), its config, its data, its recipe."""

    model_config = ConfigDict(extra="forbid")

    name: SafeName
    architecture: str = Field(max_length=100, description="A name from GET /v1/architectures.")
    config: dict[str, Any] = Field(default_factory=dict, description="The architecture's config.")
    dataset_id: uuid.UUID
    recipe: TrainingRecipe = Field(
        default_factory=TrainingRecipe, description="How the model is (or was) trained; retrain reproduces it."
    )
    update_log: RecorderConfig | None = Field(
        None,
        description="Record every training step's update while the service trains the model (needed by "
        "amnesiac and partial_amnesiac). Not available for uploaded weights. `first_epoch_gradients: []` "
        "records a language model's token embedding (its default layers); a gpt2 model also takes its group "
        "names (embedding, positions, block0.., final_norm), stored as the parameter prefixes they stand for.",
    )
    device_class: Literal["auto", "gpu", "cpu"] = Field(
        "auto",
        description="Which workers run its jobs (training and unlearning): those of the `gpu` queue, those of the "
        "`cpu` queue, or `auto`: cpu below UNLEARND_CPU_MAX_PARAMETERS parameters (1 M by default), gpu from there up.",
    )


class ModelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    architecture: str
    config: dict[str, Any] = Field(validation_alias="arch_config")
    dataset_id: uuid.UUID
    recipe: dict[str, Any]
    state: str
    head_version: int | None
    update_log_spec: dict[str, Any] | None
    update_log_id: uuid.UUID | None
    device_class: str = Field(description="auto, gpu or cpu: which workers run its jobs (see the spec's field).")
    parameter_count: int | None = Field(
        description="Elements of its checkpoint's tensors (null for a model registered before it was recorded)."
    )
    created_at: datetime
    training_job_id: uuid.UUID | None = None


class VersionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model_id: uuid.UUID
    version: int
    parent_version: int | None
    state: str
    sha256: str
    size_bytes: int
    created_by_job_id: uuid.UUID | None
    metrics: dict[str, Any]
    created_at: datetime
    retired_at: datetime | None = None
    retired_by_job_id: uuid.UUID | None = None
    purged_at: datetime | None = None
    checkpoint_url: str = ""

    def model_post_init(self, _ctx) -> None:
        self.checkpoint_url = f"/v1/models/{self.model_id}/versions/{self.version}/checkpoint"


class ArchitectureOut(BaseModel):
    name: str
    description: str
    kind: str = Field(description="classifier, or language_model (gpt2: its classes are the tokenizer's vocabulary).")
    dataset_format: str = Field(description="The datasets it trains on: arrays (.npz) or text (JSON Lines).")
    config_schema: dict[str, Any]


class UpdateLogOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    version: int
    config: dict[str, Any]
    steps_recorded: int
    steps_remaining: int = 0  # live: what amnesiac unlearning can still subtract
    steps_subtracted: int = 0  # subtracted by amnesiac unlearning
    steps_purged: int = 0  # removed by an erasure's purge without being subtracted
    dense_bytes: int
    stored_bytes: int
    gradient_bytes: int
    storage_ratio: float = 0.0
    created_at: datetime

    def model_post_init(self, _ctx) -> None:
        self.storage_ratio = round(self.stored_bytes / self.dense_bytes, 6) if self.dense_bytes else 0.0


class ResidualErasuresOut(BaseModel):
    """Erased samples the model's head still holds because they were erased from another model of
    its dataset (send a forget request for this model to remove them)."""

    model_id: uuid.UUID
    head_version: int | None
    samples_held: int = Field(description="Tombstoned samples of the dataset this model has not forgotten.")
    held_sha256: str | None = Field(description="sha256 of the sorted JSON list of their IDs (null when none).")
    erased_by_requests: list[uuid.UUID] = Field(description="The forget requests (of other models) that erased them.")
