"""What an update log is, without reading one: how it is recorded (:class:`RecorderConfig`), its
manifest (steps, their samples, the chunk files) and the states a step can be in. Torch-free: the API
validates recorder specs and stores manifests with it; reading and writing are workers.engine.update_log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "unlearnd-update-log/1"
# What became of a recorded step: still in the log, subtracted from the model, or purged without that
LIVE, SUBTRACTED, PURGED = "live", "subtracted", "purged"
STEP_STATES = (LIVE, SUBTRACTED, PURGED)


class RecorderConfig(BaseModel):
    """How a training run's updates are recorded."""

    model_config = ConfigDict(extra="forbid")

    mode: Literal["dense", "pruned"] = Field(
        "dense", description="dense: whole deltas (amnesiac); pruned: top-p entries per tensor (partial amnesiac)."
    )
    top_p: float = Field(0.1, gt=0, le=1, description="pruned: fraction of entries kept per tensor.")
    top_p_per_layer: dict[str, float] = Field(
        default_factory=dict, description="pruned: per-layer overrides, layer name prefix -> fraction."
    )
    fp16: bool = Field(False, description="Store values in float16 (half the bytes).")
    chunk_steps: int = Field(64, ge=1, le=100_000, description="Steps per chunk file.")
    first_epoch_gradients: list[str] | None = Field(
        None, description="Also record each sample's first-epoch gradient for these layers (name prefixes)."
    )

    def top_p_for(self, param: str) -> float:
        for prefix, p in self.top_p_per_layer.items():
            if param == prefix or param.startswith(prefix + "."):
                return p
        return self.top_p


@dataclass(frozen=True)
class ChunkRef:
    index: int
    key: str  # where the sink put it (an artifact key, a file name)
    sha256: str
    size: int
    kind: Literal["deltas", "gradients"] = "deltas"


@dataclass
class StepEntry:
    step: int  # 0-based, in training order
    epoch: int
    batch: int
    sample_ids: list[str]
    chunk: int
    grad_chunk: int | None = None


@dataclass
class UpdateLogManifest:
    config: RecorderConfig
    param_shapes: dict[str, list[int]]
    entries: list[StepEntry] = field(default_factory=list)
    chunks: list[ChunkRef] = field(default_factory=list)
    dense_bytes: int = 0  # what the same steps take as dense fp32 deltas: the storage baseline

    @property
    def stored_bytes(self) -> int:
        return sum(c.size for c in self.chunks if c.kind == "deltas")

    @property
    def gradient_bytes(self) -> int:
        return sum(c.size for c in self.chunks if c.kind == "gradients")

    @property
    def storage_ratio(self) -> float:
        return self.stored_bytes / self.dense_bytes if self.dense_bytes else 0.0


class ChunkSink(Protocol):
    def write_chunk(self, index: int, kind: str, data: bytes) -> ChunkRef: ...


class ChunkSource(Protocol):
    def read_chunk(self, ref: ChunkRef) -> bytes: ...
