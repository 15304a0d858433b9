"""Training throughput and update-log overhead: the engine's own ``train()`` (the train job's loop),
timed with and without the update recorders, and the same step code on the CPU.

Every row trains a fresh model (seed 0, the same initial weights and batch order) for the same
number of steps on the same rows, after a few untimed warm-up steps of the same configuration
(CUDA context, cuDNN handles, kernels; in fast mode cuDNN's autotuning). Times are wall-clock,
with the device synchronised before and after, and include the recorder's last chunk flush. Peak
memory: on CUDA the most bytes torch had allocated during the row (the model, its optimiser, the
resident training rows and the activations); on the CPU the process's peak resident set, which
only ever grows, so it is reported for the CPU row alone.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from workers.engine.architectures import build_model
from workers.engine.device import peak_memory_bytes, prepare_model, reset_peak_memory, setup_device, synchronize
from workers.engine.log_store import DirectoryLogStore
from workers.engine.parameters import select_parameters
from workers.engine.recipe import TrainingRecipe
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.tensors import LabelledTensors
from workers.engine.training import seed_everything, train
from workers.engine.update_log import RecorderConfig

log = logging.getLogger("benchmarks.gpu")

DENSE_TARGET, PRUNED_TARGET = 1.5, 1.3  # the targets: training with the log vs plain training
DISK_RESERVE = 4 << 30  # bytes left free on the log directory's disk, besides what a row writes


@dataclass
class Spec:
    """The model and the training recipe every row runs, and the logs a model registers with."""

    architecture: str
    config: dict
    input_shape: tuple[int, ...]
    num_classes: int
    recipe: TrainingRecipe
    dense: RecorderConfig
    pruned: RecorderConfig  # with first-epoch gradients: what epoch 0 of a pruned-log training does

    @property
    def pruned_later(self) -> RecorderConfig:
        """What a pruned log costs after epoch 0 (no first-epoch gradients)."""
        return self.pruned.model_copy(update={"first_epoch_gradients": None})

    def model(self, device: torch.device) -> nn.Module:
        seed_everything(0)  # the same initial weights on every row and every device
        return prepare_model(build_model(self.architecture, self.config, self.input_shape, self.num_classes), device)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.model(torch.device("cpu")).parameters())

    def dense_step_bytes(self) -> int:
        return 4 * sum(p.numel() for p in select_parameters(self.model(torch.device("cpu"))).values())


def has_precision(recipe: TrainingRecipe) -> bool:
    return "precision" in type(recipe).model_fields


Recorders = Callable[[nn.Module, Path], UpdateRecorder] | None


def _train_once(
    spec: Spec, data: LabelledTensors, device: torch.device, recipe: TrainingRecipe, recorder: Recorders, logdir: Path
) -> tuple[float, Any]:
    model = spec.model(device)
    rec = recorder(model, logdir) if recorder else None
    synchronize(device)
    reset_peak_memory(device)
    started = time.perf_counter()
    train(model, data, recipe, progress=Progress(), epochs=1, observer=rec)
    manifest = rec.finish() if rec else None
    synchronize(device)
    return time.perf_counter() - started, manifest


def timed_row(
    key: str,
    label: str,
    spec: Spec,
    data: LabelledTensors,
    device: torch.device,
    *,
    recipe: TrainingRecipe | None = None,
    recorder: Recorders = None,
    warmup_steps: int = 3,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """One epoch of ``train()`` over ``data`` (so ``len(data) / batch_size`` steps), warmed up first."""
    recipe = recipe or spec.recipe
    batch = recipe.batch_size
    root = Path(tempfile.mkdtemp(prefix=f"unlearnd-gpu-{key}-", dir=workdir))
    try:
        if warmup_steps:
            warm = data.subset(torch.arange(min(len(data), warmup_steps * batch)))
            _train_once(spec, warm, device, recipe, recorder, root / "warmup")
            shutil.rmtree(root / "warmup", ignore_errors=True)
        seconds, manifest = _train_once(spec, data, device, recipe, recorder, root / "log")
    finally:
        shutil.rmtree(root, ignore_errors=True)  # the logs were measured, not kept
    steps = -(-len(data) // batch)
    row = {
        "key": key,
        "label": label,
        "device": str(device),
        "precision": getattr(recipe, "precision", "fp32"),
        "mode": mode_of(device),
        "log": None if manifest is None else manifest.config.mode,
        "steps": steps,
        "images": len(data),
        "batch_size": batch,
        "seconds": seconds,
        "images_per_s": len(data) / seconds,
        "seconds_per_step": seconds / steps,
        "peak_memory_bytes": peak_memory_bytes(device),
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process peak RSS",
    }
    if manifest is not None:
        row |= {
            "log_bytes": manifest.stored_bytes,
            "gradient_bytes": manifest.gradient_bytes,
            "first_epoch_gradients": list(manifest.config.first_epoch_gradients or []),
            "chunk_steps": manifest.config.chunk_steps,
        }
    log.info("%-45s %7.2f s  %9.0f images/s", label, seconds, row["images_per_s"])
    return row


def mode_of(device: torch.device) -> str:
    """The CUDA determinism mode in force (workers/engine/device.py); the CPU has one."""
    if device.type != "cuda":
        return "cpu"
    return "deterministic" if torch.are_deterministic_algorithms_enabled() else "fast"


def set_mode(device: torch.device, deterministic: bool) -> None:
    """The worker's setting (``UNLEARND_DETERMINISTIC``), through the engine's own setup."""
    setup_device(device.type, deterministic=deterministic)


def recorder_for(config: RecorderConfig, ids: list[str], data: LabelledTensors) -> Recorders:
    def make(model: nn.Module, logdir: Path) -> UpdateRecorder:
        return UpdateRecorder(model, ids, config, DirectoryLogStore(logdir), data=data)

    return make


def training_rows(
    spec: Spec,
    data: LabelledTensors,
    device: torch.device,
    *,
    deterministic: bool,
    workdir: Path | None,
    deadline: float,
    notes: list[str],
    left_out: list[str],
    on_row: Callable[[list[dict]], None],
    warmup_steps: int = 3,
    looped_gradient_steps: int | None = None,
) -> list[dict[str, Any]]:
    """plain, dense log, pruned log (epoch 0: with first-epoch gradients; later epochs: without),
    plain bf16 (when the recipe has ``precision``), and on CUDA plain in the other determinism mode.
    Rows not started by ``deadline`` (time.monotonic) are left out and noted.
    ``looped_gradient_steps``: run the epoch-0 pruned row for this many steps only (when the recorder
    falls back to one backward pass per sample, see :func:`vmap_check`: its per-step cost is what counts)."""
    ids = data.ids or []
    rows: list[dict[str, Any]] = []
    fp32 = spec.recipe.model_copy(update={"precision": "fp32"}) if has_precision(spec.recipe) else spec.recipe
    dense_data = _fit_dense_on_disk(spec, data, workdir, notes)
    batch = spec.recipe.batch_size
    epoch0_data = data
    if looped_gradient_steps is not None and looped_gradient_steps * batch < len(data):
        epoch0_data = data.subset(torch.arange(looped_gradient_steps * batch))
        notes.append(
            f"The epoch-0 pruned row ran {looped_gradient_steps} steps, not {-(-len(data) // batch)}: the recorder's "
            "per-sample loop makes each step slow, and the per-step figure is what the ratio uses."
        )
    row_data = {"dense": dense_data, "pruned_epoch0": epoch0_data}
    plan: list[tuple[str, str, dict]] = [
        ("plain", "plain (no update log)", {"recipe": fp32}),
        ("dense", "dense update log", {"recipe": fp32, "recorder": recorder_for(spec.dense, ids, dense_data)}),
        (
            "pruned_epoch0",
            f"pruned log, epoch 0 (top {spec.pruned.top_p:.0%} + first-epoch gradients of "
            f"{'+'.join(spec.pruned.first_epoch_gradients or [])})",
            {"recipe": fp32, "recorder": recorder_for(spec.pruned, ids, data)},
        ),
        (
            "pruned_later",
            f"pruned log, later epochs (top {spec.pruned.top_p:.0%})",
            {"recipe": fp32, "recorder": recorder_for(spec.pruned_later, ids, data)},
        ),
    ]
    if has_precision(spec.recipe):
        plan.append(
            ("plain_bf16", "plain, bf16 autocast", {"recipe": spec.recipe.model_copy(update={"precision": "bf16"})})
        )
    else:
        notes.append("The recipe has no `precision` field here: no bf16 row.")
    if device.type == "cuda":
        other = "fast" if deterministic else "deterministic"
        plan.append((f"plain_{other}", f"plain, {other} mode", {"recipe": fp32, "mode": not deterministic}))
    for key, label, kw in plan:
        if time.monotonic() >= deadline:
            left_out.append(f"training row '{label}' (the training part's time was up)")
            continue
        mode = kw.pop("mode", None)
        if mode is not None:
            set_mode(device, mode)
        try:
            rows.append(
                timed_row(
                    key, label, spec, row_data.get(key, data), device, workdir=workdir, warmup_steps=warmup_steps, **kw
                )
            )
        except Exception as exc:  # one row failing (e.g. out of memory) keeps the others
            log.exception("training row %s failed", label)
            left_out.append(f"training row '{label}' (failed: {type(exc).__name__}: {str(exc).splitlines()[0]})")
            _free_cuda(device)
        finally:
            if mode is not None:
                set_mode(device, deterministic)
        on_row(rows)
    add_ratios(rows)
    return rows


def _free_cuda(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Seconds per step against plain training's (same device, precision and mode)."""
    plain = next((r for r in rows if r["key"] == "plain"), None)
    if plain is None:
        return
    for row in rows:
        row["vs_plain"] = row["seconds_per_step"] / plain["seconds_per_step"]
        target = {"dense": DENSE_TARGET, "pruned_epoch0": PRUNED_TARGET, "pruned_later": PRUNED_TARGET}.get(row["key"])
        if target is not None:
            row["target"] = target
            row["met"] = row["vs_plain"] <= target


def whole_run(rows: list[dict[str, Any]], epochs: int) -> dict[str, Any] | None:
    """A pruned-log training of ``epochs`` epochs: epoch 0 records first-epoch gradients, the others
    do not; its time against plain training's, from the per-step figures."""
    by = {r["key"]: r for r in rows}
    if not {"plain", "pruned_epoch0", "pruned_later"} <= set(by):
        return None
    plain = by["plain"]["seconds_per_step"] * epochs
    pruned = by["pruned_epoch0"]["seconds_per_step"] + by["pruned_later"]["seconds_per_step"] * (epochs - 1)
    ratio = pruned / plain
    return {"epochs": epochs, "vs_plain": ratio, "target": PRUNED_TARGET, "met": ratio <= PRUNED_TARGET}


def _fit_dense_on_disk(spec: Spec, data: LabelledTensors, workdir: Path | None, notes: list[str]) -> LabelledTensors:
    """The dense row writes 4 bytes per parameter per step; fewer steps if the disk has not the room."""
    step_bytes = spec.dense_step_bytes()
    batch = spec.recipe.batch_size
    steps = -(-len(data) // batch)
    free = shutil.disk_usage(workdir or tempfile.gettempdir()).free
    fits = max(0, (free - DISK_RESERVE) // step_bytes)
    if fits >= steps:
        return data
    kept = max(1, int(fits))
    notes.append(
        f"The dense row ran {kept} steps, not {steps}: {steps} steps of {step_bytes / 1e6:.1f} MB need "
        f"{steps * step_bytes / 1e9:.1f} GB and the log directory's disk had {free / 1e9:.1f} GB free."
    )
    return data.subset(torch.arange(min(len(data), kept * batch)))


def vmap_check(spec: Spec, data: LabelledTensors, device: torch.device) -> str | None:
    """Whether the recorder's batched (vmap) path computes this model's per-sample first-epoch
    gradients, or falls back to one backward pass per sample (far slower): None, or the error."""
    if not spec.pruned.first_epoch_gradients:
        return None
    model = spec.model(device)
    model.eval()
    x, y = data.batch(torch.arange(min(4, len(data))))
    with tempfile.TemporaryDirectory() as logdir:
        rec = UpdateRecorder(model, data.ids or [], spec.pruned, DirectoryLogStore(logdir), data=data)
        try:
            rec._vmap_gradients(model, x, y, torch.arange(len(y)), len(y))
        except Exception as exc:  # reported, not raised: a diagnostic
            return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


def cpu_row(
    spec: Spec, x: np.ndarray, y: np.ndarray, ids: list[str], steps: int, budget_s: float, notes: list[str]
) -> dict[str, Any] | None:
    """The same training step code on the CPU (torch's threads: the machine's cores), for ``steps``
    steps or fewer if a warm-up step says they would not fit ``budget_s``."""
    cpu = torch.device("cpu")
    batch = spec.recipe.batch_size
    fp32 = spec.recipe.model_copy(update={"precision": "fp32"}) if has_precision(spec.recipe) else spec.recipe
    warm = LabelledTensors.from_arrays(x[: 2 * batch], y[: 2 * batch], ids[: 2 * batch], cpu)
    per_step, _ = _train_once(spec, warm, cpu, fp32, None, Path(tempfile.gettempdir()))
    per_step /= -(-len(warm) // batch)
    fit = int(budget_s // max(per_step, 1e-6))
    if fit < 2:
        notes.append(
            f"CPU comparison left out: one CPU step took {per_step:.1f} s, over the {budget_s:.0f} s left for it."
        )
        return None
    if fit < steps:
        notes.append(
            f"CPU comparison: {fit} steps, not {steps} (one step took {per_step:.2f} s; {budget_s:.0f} s left)."
        )
        steps = fit
    n = min(len(y), steps * batch)
    data = LabelledTensors.from_arrays(x[:n], y[:n], ids[:n], cpu)
    row = timed_row("cpu", "plain (no update log), CPU", spec, data, cpu, recipe=fp32, warmup_steps=0)
    row["torch_threads"] = torch.get_num_threads()
    return row
