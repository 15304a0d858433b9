"""The update recorder: attach it to a training loop and it logs every step's delta.

From the service's train job or from your own loop::

    recorder = UpdateRecorder(model, sample_ids, RecorderConfig(mode="pruned"), sink)
    for rows in batches:                       # rows: indices into sample_ids
        recorder.before_step(model, epoch, batch, rows)
        ... loss.backward(); optimizer.step() ...
        recorder.after_step(model, epoch, batch, rows)
    manifest = recorder.finish()

A step's entry lists the unique sample IDs of its batch in first-appearance order. For a language
model a row is a block and its ID the document's, so a step lists each document once; first-epoch
gradients are recorded per ID: the rows of one ID in one step are summed into one gradient row (the
gradient of the sum of their per-row losses, ``objective.loss(..., reduction="none")``), row ``i`` of
a step's gradient tensors belonging to ``sample_ids[i]`` of its entry. Parameters come from
``named_parameters()``, which lists a tied tensor once (GPT-2's ``lm_head.weight`` is
``transformer.wte.weight``), so a tied weight is recorded once.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from safetensors.torch import save as save_tensors
from torch import nn
from torch.func import functional_call, grad, vmap

from workers.engine.device import plain_image_inputs, synchronize, to_host
from workers.engine.objectives import CLASSIFICATION, Objective
from workers.engine.parameters import select_parameters
from workers.engine.tensors import LabelledTensors
from workers.engine.update_log import FORMAT, ChunkSink, RecorderConfig, StepEntry, UpdateLogManifest, encode_step

VMAP_MAX_ELEMENTS = 1 << 26  # per-row gradients larger than this (256 MB of fp32) go through the loop


def _unique_ids(sample_ids: Sequence[str], rows: torch.Tensor) -> list[str]:
    """The step's sample IDs, each once, in first-appearance order."""
    return list(dict.fromkeys(sample_ids[i] for i in rows.tolist()))


class UpdateRecorder:
    def __init__(
        self,
        model: nn.Module,
        sample_ids: Sequence[str],
        config: RecorderConfig,
        sink: ChunkSink,
        data: LabelledTensors | None = None,
        objective: Objective = CLASSIFICATION,
    ):
        """``sample_ids[i]`` names training row ``i`` (for a language model: the document of block
        ``i``); ``data`` (the training tensors) is needed only to record first-epoch gradients, of
        ``objective`` (the one training minimises)."""
        self.sample_ids = sample_ids
        self.objective = objective
        self.config = config
        self.sink = sink
        self.data = data
        self.params = select_parameters(model)
        self.device = next(iter(self.params.values())).device if self.params else torch.device("cpu")
        self.grad_params = (
            select_parameters(model, config.first_epoch_gradients) if config.first_epoch_gradients else {}
        )
        if self.grad_params and data is None:
            raise ValueError("recording first-epoch gradients needs the training tensors (data=...)")
        self.manifest = UpdateLogManifest(
            config=config, param_shapes={n: list(p.shape) for n, p in self.params.items()}
        )
        self._before: dict[str, torch.Tensor] = {}
        self._deltas: dict[str, torch.Tensor] = {}
        self._grads: dict[str, torch.Tensor] = {}
        self._step = 0
        self._chunk = 0
        self._grad_chunk = 0
        self._dense_step_bytes = sum(4 * p.numel() for p in self.params.values())

    def before_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None:
        self._before = {n: p.detach().clone() for n, p in self.params.items()}
        if epoch == 0 and self.grad_params:
            self._record_gradients(model, rows)

    @torch.no_grad()
    def after_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None:
        deltas = {name: p.detach() - self._before[name] for name, p in self.params.items()}
        # pruned on the device; only what is stored crosses to host memory, without waiting for it
        self._deltas.update({k: to_host(t) for k, t in encode_step(self._step, deltas, self.config).items()})
        self._before = {}
        ids = _unique_ids(self.sample_ids, rows)
        grad_chunk = self._grad_chunk if (epoch == 0 and self.grad_params) else None
        self.manifest.entries.append(StepEntry(self._step, epoch, batch, ids, self._chunk, grad_chunk))
        self.manifest.dense_bytes += self._dense_step_bytes
        self._step += 1
        if self._step % self.config.chunk_steps == 0:
            self._flush()

    def _record_gradients(self, model: nn.Module, rows: torch.Tensor) -> None:
        """Each ID's own gradient at the state it is first seen in (before this step), one row per
        unique ID of the step in first-appearance order (the rows of one ID summed)."""
        ids = [self.sample_ids[i] for i in rows.tolist()]
        unique = list(dict.fromkeys(ids))
        where = {sid: k for k, sid in enumerate(unique)}
        owner = torch.tensor([where[sid] for sid in ids], dtype=torch.long)
        x, y = self.data.batch(rows)
        was_training = model.training
        model.eval()  # per-sample gradients: batch-norm uses its running statistics (and no dropout)
        try:
            numel = sum(p.numel() for p in self.grad_params.values())
            per_id = None
            if len(rows) * numel <= VMAP_MAX_ELEMENTS:
                try:
                    with plain_image_inputs(model):
                        per_id = self._vmap_gradients(model, x, y, owner, len(unique))
                except RuntimeError:  # an operation vmap cannot batch: fall back to a loop
                    per_id = None
            if per_id is None:
                per_id = self._looped_gradients(model, x, y, owner, len(unique))
        finally:
            model.train(was_training)
        dtype = torch.float16 if self.config.fp16 else torch.float32
        for name, g in per_id.items():
            self._grads[f"{self._step}/{name}"] = to_host(g.detach().to(dtype).contiguous())

    def _vmap_gradients(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, owner: torch.Tensor, n_ids: int
    ) -> dict[str, torch.Tensor]:
        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = dict(model.named_buffers())
        chosen = {n: params[n] for n in self.grad_params}
        objective = self.objective

        def sample_loss(chosen_params, xi, yi):
            out = functional_call(model, ({**params, **chosen_params}, buffers), (xi.unsqueeze(0),))
            return objective.loss_from_output(out, yi.unsqueeze(0), reduction="sum")

        with warnings.catch_warnings():  # "not yet implemented the batching rule": slower, still exact
            warnings.filterwarnings("ignore", message=".*batching rule.*")
            per_row = vmap(grad(sample_loss), in_dims=(None, 0, 0))(chosen, x, y)
        if n_ids == len(owner):  # every row its own ID (classifiers): no summing needed
            return per_row
        index = owner.to(x.device)
        return {
            n: torch.zeros((n_ids, *g.shape[1:]), dtype=g.dtype, device=g.device).index_add_(0, index, g)
            for n, g in per_row.items()
        }

    def _looped_gradients(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, owner: torch.Tensor, n_ids: int
    ) -> dict[str, torch.Tensor]:
        """One ordinary backward pass per ID, for the chosen parameters only."""
        chosen = list(self.grad_params.values())
        out: dict[str, list[torch.Tensor]] = {n: [] for n in self.grad_params}
        for k in range(n_ids):
            mine = (owner == k).nonzero()[:, 0].to(x.device)
            loss = self.objective.loss(model, x[mine], y[mine], reduction="sum")
            for name, g in zip(self.grad_params, torch.autograd.grad(loss, chosen, allow_unused=True), strict=True):
                out[name].append(torch.zeros_like(self.grad_params[name]) if g is None else g.detach())
        return {n: torch.stack(gs) for n, gs in out.items()}

    def _flush(self) -> None:
        synchronize(self.device)  # the host copies of this chunk's steps are complete before they are read
        if self._deltas:
            data = save_tensors(self._deltas, metadata={"format": FORMAT, "mode": self.config.mode})
            self.manifest.chunks.append(self.sink.write_chunk(self._chunk, "deltas", data))
            self._deltas = {}
            self._chunk += 1
        if self._grads:
            data = save_tensors(self._grads, metadata={"format": FORMAT, "kind": "first-epoch-gradients"})
            self.manifest.chunks.append(self.sink.write_chunk(self._grad_chunk, "gradients", data))
            self._grads = {}
            self._grad_chunk += 1

    def finish(self) -> UpdateLogManifest:
        self._flush()
        return self.manifest


class Observers:
    """Several step observers as one (e.g. a dense and a pruned recorder on the same run)."""

    def __init__(self, *observers):
        self.observers = observers

    def before_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None:
        for o in self.observers:
            o.before_step(model, epoch, batch, rows)

    def after_step(self, model: nn.Module, epoch: int, batch: int, rows: torch.Tensor) -> None:
        for o in self.observers:
            o.after_step(model, epoch, batch, rows)
