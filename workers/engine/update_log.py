"""Recorded training updates: the format, how they are stored in chunks, and how they are read back.

A log holds, for every optimiser step of training, the step's sample IDs and its parameter delta
``theta_after - theta_before`` (trainable weights and biases, not batch-norm statistics):

- ``dense``: the whole delta (what amnesiac unlearning subtracts);
- ``pruned``: per tensor only the top-p entries by |delta| (partial amnesiac), stored sparse: the
  values plus either sorted int32 indices or a packed bitmask, whichever is smaller;
- optionally fp16 values.

Steps are grouped into chunk files (safetensors, one per ``chunk_steps`` steps), never one file per
step. Optionally the first epoch's per-sample gradients of chosen layers are kept too (gradient
ascent with first-epoch gradients, seed paper 002). A purge rewrites a chunk without some steps
(:mod:`workers.engine.log_chunks`); the readers look each step up by its keys, so the remaining
steps of a rewritten chunk read exactly as before. The config and the manifest are torch-free, in
:mod:`workers.engine.log_manifest` (the API reads them); this module re-exports them.

A step leaves the log in one of two ways, and the log remembers which: ``subtracted`` (amnesiac
unlearning subtracted its delta: every sample's influence in it is gone) or ``purged`` (an erasure by
a method that does not subtract removed it: the other samples of its batch still influence the model,
and that part can no longer be subtracted). :meth:`UpdateLogReader.coverage` tells them apart.
"""

from __future__ import annotations

import abc
import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from safetensors.torch import load as load_tensors

from workers.engine.log_manifest import (
    FORMAT,
    LIVE,
    PURGED,
    STEP_STATES,
    SUBTRACTED,
    ChunkRef,
    ChunkSink,
    ChunkSource,
    RecorderConfig,
    StepEntry,
    UpdateLogManifest,
)

# ---- encoding ---------------------------------------------------------------------------------
# One step is stored as few tensors as possible (safetensors spends a header entry per tensor): the
# deltas of all parameters concatenated in the manifest's order, and for a pruned log the kept
# entries' values plus their positions in that concatenation.


def encode_step(step: int, deltas: dict[str, torch.Tensor], config: RecorderConfig) -> dict[str, torch.Tensor]:
    """One step's stored tensors, computed where the deltas live (the recorder copies only these to
    host memory). Every size is known from the shapes alone, so nothing here waits for the device."""
    flat = torch.cat([d.detach().flatten() for d in deltas.values()]).float()
    dtype = torch.float16 if config.fp16 else torch.float32
    if config.mode == "dense":
        return {f"{step}": flat.to(dtype)}
    index = top_p_positions(flat, {name: d.numel() for name, d in deltas.items()}, config)
    out = {f"{step}/values": flat[index].to(dtype)}  # in ascending position order
    if 4 * index.numel() <= math.ceil(flat.numel() / 8):  # sparse enough: positions are smaller than a bitmask
        out[f"{step}/index"] = index.to(torch.int32)
    else:
        keep = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
        keep[index] = True
        out[f"{step}/mask"] = packbits(keep)
    return out


def top_p_positions(flat: torch.Tensor, sizes: dict[str, int], config: RecorderConfig) -> torch.Tensor:
    """Ascending positions in ``flat`` (the tensors of ``sizes`` concatenated) of each tensor's top-p
    entries by magnitude: top-p per tensor, not globally."""
    kept, offset = [], 0
    for name, n in sizes.items():
        k = max(1, math.ceil(config.top_p_for(name) * n))
        kept.append(torch.topk(flat[offset : offset + n].abs(), k, sorted=False).indices + offset)
        offset += n
    return torch.cat(kept).sort().values


_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits' order: the first entry is the high bit


def packbits(bits: torch.Tensor) -> torch.Tensor:
    """``np.packbits`` of a flat bool tensor, on its own device (zero-padded to whole bytes)."""
    padded = torch.nn.functional.pad(bits.to(torch.uint8), (0, -bits.numel() % 8)).view(-1, 8)
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=bits.device)
    return (padded * weights).sum(1, dtype=torch.uint8)


def decode_flat(step: int, tensors: dict[str, torch.Tensor], total: int) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One stored step as (positions in the concatenated parameter vector, or None when dense; values)."""
    if f"{step}" in tensors:
        return None, tensors[f"{step}"].float()
    values = tensors[f"{step}/values"].float()
    if f"{step}/index" in tensors:
        return tensors[f"{step}/index"].long(), values
    bits = np.unpackbits(tensors[f"{step}/mask"].numpy(), count=total).astype(bool)
    return torch.from_numpy(np.flatnonzero(bits)), values


def decode_step(
    step: int, tensors: dict[str, torch.Tensor], shapes: dict[str, list[int]]
) -> dict[str, tuple[torch.Tensor | None, torch.Tensor]]:
    """{param: (flat indices, or None when dense; float32 values)} of one stored step."""
    sizes = [math.prod(shape) for shape in shapes.values()]
    index, values = decode_flat(step, tensors, sum(sizes))
    if index is None:
        return {name: (None, v) for name, v in zip(shapes, values.split(sizes), strict=True)}
    bounds = torch.tensor(np.cumsum([0, *sizes]))
    cuts = torch.searchsorted(index, bounds).tolist()
    return {
        name: (index[cuts[i] : cuts[i + 1]] - bounds[i], values[cuts[i] : cuts[i + 1]]) for i, name in enumerate(shapes)
    }


@dataclass(frozen=True)
class StepInfo:
    chunk: int
    grad_chunk: int | None
    size: int  # samples in the step's batch


@dataclass(frozen=True)
class LogCoverage:
    """How much of some samples' training a log still accounts for (:meth:`UpdateLogReader.coverage`).

    ``steps_*`` of a state count distinct steps; ``steps_unrecorded`` counts, per sample, the steps it
    should have been in (training puts it in a fixed number of steps per epoch) that the log never
    held. A sample with no steps left that was erased earlier (tombstoned) is ``samples_erased``:
    nothing of it is expected any more."""

    samples: int = 0  # distinct sample IDs asked about
    samples_erased: int = 0
    steps_live: int = 0  # still in the log: what subtracting removes
    steps_subtracted: int = 0  # already subtracted from the model
    steps_purged: int = 0  # purged by an earlier erasure without being subtracted
    steps_unrecorded: int = 0
    samples_subtracted: int = 0  # samples with at least one step of that kind
    samples_purged: int = 0
    samples_unrecorded: int = 0
    samples_missing: int = 0  # samples with a purged or unrecorded step
    samples_not_live: int = 0  # samples with any step a reader of live steps no longer sees
    erased_ids: frozenset[str] = field(default_factory=frozenset, repr=False)

    @property
    def steps_missing(self) -> int:
        return self.steps_purged + self.steps_unrecorded

    @property
    def complete(self) -> bool:
        return self.samples_missing == 0


class UpdateLogReader(abc.ABC):
    """Reads a log back: which steps held some samples, their deltas, first-epoch gradients.

    Subclasses say where the index lives (a manifest in memory, or the service's database, where
    "which steps held these samples" is one indexed query); decoding and chunk caching live here.
    """

    def __init__(
        self, config: RecorderConfig, param_shapes: dict[str, list[int]], recorded_steps: int, storage_ratio: float
    ):
        self.config = config
        self.param_shapes = param_shapes
        self.recorded_steps = recorded_steps
        self.storage_ratio = storage_ratio
        self.bytes_read = 0
        self._cache: tuple[tuple[str, int], dict[str, torch.Tensor]] | None = None

    @abc.abstractmethod
    def steps_containing(self, sample_ids: Sequence[str]) -> list[int]:
        """Live steps (neither subtracted nor purged) whose batch held any of these samples."""

    @abc.abstractmethod
    def step_info(self, steps: Sequence[int]) -> dict[int, StepInfo]: ...

    @abc.abstractmethod
    def positions(self, sample_ids: Sequence[str], steps: Sequence[int]) -> dict[int, list[int]]:
        """For each step, the rows of its batch that hold one of these samples."""

    @abc.abstractmethod
    def chunk_ref(self, kind: str, index: int) -> ChunkRef: ...

    @abc.abstractmethod
    def read_chunk(self, ref: ChunkRef) -> bytes: ...

    @property
    @abc.abstractmethod
    def epochs(self) -> int:
        """Epochs the log recorded."""

    @abc.abstractmethod
    def step_states(
        self, sample_ids: Sequence[str], epoch: int | None = None
    ) -> tuple[dict[str, Counter[str]], dict[int, str]]:
        """For the samples' recorded steps (of ``epoch`` only, if given): per sample, how many are in
        each state; and each distinct step with its state. A sample without steps is left out."""

    @abc.abstractmethod
    def erased_samples(self, sample_ids: Sequence[str]) -> set[str]:
        """Those of these samples that were erased earlier (tombstoned)."""

    def coverage(
        self, sample_ids: Sequence[str], steps_per_epoch: Mapping[str, int] | None = None, epoch: int | None = None
    ) -> LogCoverage:
        """Whether the log still accounts for every step these samples were trained in (of ``epoch``
        only, if given). ``steps_per_epoch``: steps of one epoch that held each sample (default 1;
        a language model's long document spans several, see ``workers.engine.training``)."""
        ids = list(dict.fromkeys(sample_ids))
        per_sample, steps = self.step_states(ids, epoch)
        erased = self.erased_samples([s for s in ids if s not in per_sample])
        epochs = 1 if epoch is not None else self.epochs
        by_state = Counter(steps.values())
        samples: Counter[str] = Counter()
        unrecorded = 0
        for sid in ids:
            if sid in erased:
                continue
            held = per_sample.get(sid, Counter())
            expected = epochs * (steps_per_epoch.get(sid, 1) if steps_per_epoch is not None else 1)
            short = max(0, expected - sum(held.values()))
            unrecorded += short
            samples[SUBTRACTED] += held[SUBTRACTED] > 0
            samples[PURGED] += held[PURGED] > 0
            samples["unrecorded"] += short > 0
            samples["missing"] += held[PURGED] > 0 or short > 0
            samples["not_live"] += held[SUBTRACTED] > 0 or held[PURGED] > 0 or short > 0
        return LogCoverage(
            samples=len(ids),
            samples_erased=len(erased),
            steps_live=by_state[LIVE],
            steps_subtracted=by_state[SUBTRACTED],
            steps_purged=by_state[PURGED],
            steps_unrecorded=unrecorded,
            samples_subtracted=samples[SUBTRACTED],
            samples_purged=samples[PURGED],
            samples_unrecorded=samples["unrecorded"],
            samples_missing=samples["missing"],
            samples_not_live=samples["not_live"],
            erased_ids=frozenset(erased),
        )

    def _chunk(self, kind: str, index: int) -> dict[str, torch.Tensor]:
        if self._cache is None or self._cache[0] != (kind, index):
            data = self.read_chunk(self.chunk_ref(kind, index))
            self.bytes_read += len(data)
            self._cache = ((kind, index), load_tensors(data))
        return self._cache[1]

    @property
    def total_entries(self) -> int:
        return sum(math.prod(shape) for shape in self.param_shapes.values())

    def deltas(self, steps: Sequence[int]) -> Iterator[tuple[int, torch.Tensor | None, torch.Tensor]]:
        """(step, positions or None when dense, values) over the concatenated parameter vector, in
        chunk order so that each chunk is read once."""
        info, total = self.step_info(steps), self.total_entries
        for step in sorted(steps, key=lambda s: (info[s].chunk, s)):
            yield step, *decode_flat(step, self._chunk("deltas", info[step].chunk), total)

    def first_epoch_gradients(self, sample_ids: Sequence[str]) -> dict[str, torch.Tensor] | None:
        """Sum of the recorded first-epoch gradients of these samples in live steps, per recorded
        parameter (a sample whose step left the log adds nothing: check :meth:`coverage` first)."""
        if not self.config.first_epoch_gradients:
            return None
        steps = [s for s, i in self.step_info(self.steps_containing(sample_ids)).items() if i.grad_chunk is not None]
        if not steps:
            return None
        info, rows_of = self.step_info(steps), self.positions(sample_ids, steps)
        total: dict[str, torch.Tensor] = {}
        for step in sorted(steps, key=lambda s: (info[s].grad_chunk, s)):
            tensors = self._chunk("gradients", info[step].grad_chunk)
            rows = torch.tensor(rows_of[step])
            prefix = f"{step}/"
            for key, value in tensors.items():
                if key.startswith(prefix):
                    name = key[len(prefix) :]
                    part = value[rows].float().sum(0)
                    total[name] = total[name] + part if name in total else part
        return total


class ManifestReader(UpdateLogReader):
    """A log read through its manifest (library use: DirectoryLogStore, tests, benchmarks). What
    leaves the log is marked in memory, as the service's index marks it: :meth:`consume` after
    subtracting, :meth:`purge` after an erasure by a method that does not subtract."""

    def __init__(self, manifest: UpdateLogManifest, source: ChunkSource):
        super().__init__(manifest.config, manifest.param_shapes, len(manifest.entries), manifest.storage_ratio)
        self.manifest = manifest
        self.source = source
        self._by_step = {e.step: e for e in manifest.entries}
        self._chunks = {(c.kind, c.index): c for c in manifest.chunks}
        self._epochs = max((e.epoch for e in manifest.entries), default=-1) + 1
        self.consumed: set[int] = set()
        self.purged: set[int] = set()
        self.erased: set[str] = set()  # samples erased earlier: their own rows are gone

    def consume(self, steps: Sequence[int]) -> None:
        """Mark steps as subtracted: later lookups skip them (what the service's index does)."""
        self.consumed.update(steps)

    def purge(self, erased_ids: Sequence[str]) -> list[int]:
        """What the service's purge does after an erasure: the live steps that held an erased sample
        leave the log as purged, and the erased samples' own rows go. Returns the steps purged."""
        steps = self.steps_containing(erased_ids)
        self.purged.update(steps)
        self.erased.update(erased_ids)
        return steps

    def _state(self, step: int) -> str:
        return SUBTRACTED if step in self.consumed else PURGED if step in self.purged else LIVE

    def steps_containing(self, sample_ids: Sequence[str]) -> list[int]:
        wanted = set(sample_ids) - self.erased
        return sorted(
            e.step for e in self.manifest.entries if self._state(e.step) == LIVE and wanted.intersection(e.sample_ids)
        )

    @property
    def epochs(self) -> int:
        return self._epochs

    def step_states(
        self, sample_ids: Sequence[str], epoch: int | None = None
    ) -> tuple[dict[str, Counter[str]], dict[int, str]]:
        wanted = set(sample_ids) - self.erased
        per_sample: dict[str, Counter[str]] = {}
        steps: dict[int, str] = {}
        for e in self.manifest.entries:
            if epoch is not None and e.epoch != epoch:
                continue
            for sid in wanted.intersection(e.sample_ids):
                state = steps[e.step] = self._state(e.step)
                per_sample.setdefault(sid, Counter())[state] += 1
        return per_sample, steps

    def erased_samples(self, sample_ids: Sequence[str]) -> set[str]:
        return self.erased.intersection(sample_ids)

    def step_info(self, steps: Sequence[int]) -> dict[int, StepInfo]:
        return {
            s: StepInfo(self._by_step[s].chunk, self._by_step[s].grad_chunk, len(self._by_step[s].sample_ids))
            for s in steps
        }

    def positions(self, sample_ids: Sequence[str], steps: Sequence[int]) -> dict[int, list[int]]:
        wanted = set(sample_ids)
        return {s: [i for i, sid in enumerate(self._by_step[s].sample_ids) if sid in wanted] for s in steps}

    def chunk_ref(self, kind: str, index: int) -> ChunkRef:
        return self._chunks[(kind, index)]

    def read_chunk(self, ref: ChunkRef) -> bytes:
        return self.source.read_chunk(ref)


__all__ = [
    "FORMAT",
    "LIVE",
    "PURGED",
    "STEP_STATES",
    "SUBTRACTED",
    "ChunkRef",
    "ChunkSink",
    "ChunkSource",
    "LogCoverage",
    "ManifestReader",
    "RecorderConfig",
    "StepEntry",
    "StepInfo",
    "UpdateLogManifest",
    "UpdateLogReader",
    "decode_flat",
    "decode_step",
    "encode_step",
]
