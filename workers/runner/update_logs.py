"""Update logs on the service's storage: chunks in the artifact store, the index in the database."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence

from app.db import session_scope
from app.storage import get_artifact_store
from app.update_logs import repository
from workers.engine.update_log import ChunkRef, RecorderConfig, StepInfo, UpdateLogReader


class ArtifactChunkSink:
    """Where the recorder writes its chunk files during a train job."""

    def write_chunk(self, index: int, kind: str, data: bytes) -> ChunkRef:
        stored = get_artifact_store().put_bytes(data, kind="update_logs", suffix=".safetensors")
        return ChunkRef(index=index, key=stored.key, sha256=stored.sha256, size=stored.size, kind=kind)


class DbUpdateLogReader(UpdateLogReader):
    """A model's log as the service keeps it: "which steps held these samples" is one indexed query on
    the inverted index (live steps only; the completeness check reads every state); chunks are read
    from the artifact store and verified against their sha256."""

    def __init__(self, log_id: uuid.UUID):
        with session_scope() as db:
            log = repository.get(db, log_id)
            self._chunks = {
                (c.kind, c.chunk_index): ChunkRef(c.chunk_index, c.artifact_key, c.sha256, c.size_bytes, c.kind)
                for c in repository.chunks(db, log_id)
            }
            super().__init__(
                RecorderConfig.model_validate(log.config),
                {name: shape for name, shape in log.param_shapes},  # stored as ordered pairs
                log.steps_recorded,
                log.stored_bytes / log.dense_bytes if log.dense_bytes else 0.0,
            )
            self._epochs = repository.recorded_epochs(db, log_id)
        self.log_id = log_id

    @property
    def epochs(self) -> int:
        return self._epochs

    def step_states(
        self, sample_ids: Sequence[str], epoch: int | None = None
    ) -> tuple[dict[str, Counter[str]], dict[int, str]]:
        with session_scope() as db:
            rows, steps = repository.step_states(db, self.log_id, list(sample_ids), epoch)
        per_sample: dict[str, Counter[str]] = defaultdict(Counter)
        for sample_id, state, n in rows:
            per_sample[sample_id][state] += n
        return dict(per_sample), dict(steps)

    def erased_samples(self, sample_ids: Sequence[str]) -> set[str]:
        if not sample_ids:
            return set()
        with session_scope() as db:
            return repository.erased_samples(db, self.log_id, list(sample_ids))

    def steps_containing(self, sample_ids: Sequence[str]) -> list[int]:
        with session_scope() as db:
            return repository.steps_containing(db, self.log_id, list(sample_ids))

    def step_info(self, steps: Sequence[int]) -> dict[int, StepInfo]:
        with session_scope() as db:
            return {
                r.step: StepInfo(r.chunk_index, r.grad_chunk_index, r.sample_count)
                for r in repository.steps(db, self.log_id, list(steps))
            }

    def positions(self, sample_ids: Sequence[str], steps: Sequence[int]) -> dict[int, list[int]]:
        out: dict[int, list[int]] = defaultdict(list)
        with session_scope() as db:
            for step, position in repository.positions(db, self.log_id, list(sample_ids), list(steps)):
                out[step].append(position)
        return {s: sorted(out[s]) for s in steps}

    def chunk_ref(self, kind: str, index: int) -> ChunkRef:
        return self._chunks[(kind, index)]

    def read_chunk(self, ref: ChunkRef) -> bytes:
        return get_artifact_store().read_verified(ref.key, ref.sha256)
