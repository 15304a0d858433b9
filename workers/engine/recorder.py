"""The update recorder: attach it to a training loop and it logs every step's delta.

From the service's train job or from your own loop::

    recorder = UpdateRecorder(model, sample_ids, RecorderConfig(mode="pruned"), sink)
    for rows in batches:                       # rows: indices into sample_ids
        recorder.before_step(model, epoch, batch, rows)
        ... loss.backward(); optimizer.step() ...
        recorder.after_step(model, epoch, batch, rows)
    manifest = recorder.finish()
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from safetensors.torch import save as save_tensors
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn import functional as F

from workers.engine.parameters import select_parameters
from workers.engine.tensors import LabelledTensors
from workers.engine.update_log import FORMAT, ChunkSink, RecorderConfig, StepEntry, UpdateLogManifest, encode_step


class UpdateRecorder:
    def __init__(
        self,
        model: nn.Module,
        sample_ids: Sequence[str],
        config: RecorderConfig,
        sink: ChunkSink,
        data: LabelledTensors | None = None,
    ):
        """``sample_ids[i]`` names training row ``i``; ``data`` (the training tensors) is needed only
        to record first-epoch gradients."""
        self.sample_ids = sample_ids
        self.config = config
        self.sink = sink
        self.data = data
        self.params = select_parameters(model)
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
        self._deltas.update(encode_step(self._step, deltas, self.config))
        self._before = {}
        ids = [self.sample_ids[i] for i in rows.tolist()]
        grad_chunk = self._grad_chunk if (epoch == 0 and self.grad_params) else None
        self.manifest.entries.append(StepEntry(self._step, epoch, batch, ids, self._chunk, grad_chunk))
        self.manifest.dense_bytes += self._dense_step_bytes
        self._step += 1
        if self._step % self.config.chunk_steps == 0:
            self._flush()

    def _record_gradients(self, model: nn.Module, rows: torch.Tensor) -> None:
        """Each sample's own gradient at the state it is first seen in (before this step)."""
        params = {n: p.detach() for n, p in model.named_parameters()}
        buffers = dict(model.named_buffers())
        chosen = {n: params[n] for n in self.grad_params}

        def sample_loss(chosen_params, x, y):
            out = functional_call(model, ({**params, **chosen_params}, buffers), (x.unsqueeze(0),))
            return F.cross_entropy(out, y.unsqueeze(0))

        device_rows = rows.to(self.data.device)
        was_training = model.training
        model.eval()  # per-sample gradients: batch-norm uses its running statistics
        per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(
            chosen, self.data.x[device_rows], self.data.y[device_rows]
        )
        model.train(was_training)
        dtype = torch.float16 if self.config.fp16 else torch.float32
        for name, g in per_sample.items():
            self._grads[f"{self._step}/{name}"] = g.detach().to("cpu", dtype).contiguous()

    def _flush(self) -> None:
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
