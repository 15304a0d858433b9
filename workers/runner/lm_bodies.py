"""A language model's train and unlearn jobs (bodies.py has the classifier's; bodies_for picks).

The rows are blocks of packed documents (see workers.runner.inputs): training minimises the
next-token loss (CAUSAL_LM) with each document's blocks kept in one batch, so the update log's
step entries and first-epoch gradients are per document ID. Metrics are perplexities, not
accuracies:

- train job: ``train_perplexity``, ``test_perplexity`` (exp of the mean NLL per real target token;
  ``test_perplexity`` is null without test documents), ``counts`` (blocks and documents per split),
  the cost fields and ``update_log`` as for a classifier;
- unlearn job: ``workers.engine.lm_eval.lm_verification`` of the sets ``forget`` (the scope's
  documents), ``retain`` (other training documents, sampled to UNLEARND_EVAL_RETAIN_MAX_ROWS
  blocks) and ``test`` (held-out evaluation documents), after the method and under ``before``;
  methods read only the held-out calibration documents (``holdout``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from app.jobs.tables import Job
from app.settings import get_settings
from workers.engine.lm_eval import lm_verification, set_perplexity
from workers.engine.methods import UnlearningTask
from workers.engine.objectives import CAUSAL_LM
from workers.engine.recorder import UpdateRecorder
from workers.engine.runtime import Progress
from workers.engine.training import seed_everything, steps_per_epoch, train
from workers.engine.verification.gate import GateData
from workers.runner.attempts import Hooks
from workers.runner.bodies import Result, cost, sample_rows, update_log_metrics, verified_result
from workers.runner.inputs import JobInputs
from workers.runner.update_logs import ArtifactChunkSink, DbUpdateLogReader


def train_body(
    job: Job, inputs: JobInputs, device: torch.device, progress: Progress, started: float, hooks: Hooks
) -> Result:
    blocks, recipe = inputs.blocks, inputs.recipe
    data = inputs.tensors(blocks.rows("train", exclude_ids=inputs.erased_ids), device, with_ids=True)
    # whole documents per batch: at most this many steps (a batch may take more than batch_size blocks)
    progress.total_steps = recipe.epochs * steps_per_epoch(len(data), recipe.batch_size)
    seed_everything(recipe.seed)
    model = inputs.build_model(device)
    recorder = None
    if inputs.update_log_spec is not None:
        recorder = UpdateRecorder(
            model, data.ids, inputs.update_log_spec, ArtifactChunkSink(), data=data, objective=CAUSAL_LM
        )
    model = train(
        model, data, recipe, progress=progress, phase="train", observer=recorder, objective=CAUSAL_LM, group_by_ids=True
    )
    manifest = recorder.finish() if recorder else None
    wall = time.perf_counter() - started
    hooks.verifying()
    test = inputs.tensors(blocks.held_out("evaluation"), device, with_ids=True)
    metrics = {"train_perplexity": set_perplexity(model, data), "test_perplexity": set_perplexity(model, test)}
    metrics.update(
        cost(progress, wall, device),
        counts={
            "train": len(data),
            "test": len(test),
            "train_documents": len(set(data.ids)),
            "test_documents": len(set(test.ids)),
        },
    )
    if manifest is not None:
        metrics["update_log"] = update_log_metrics(manifest)
    return Result(model, metrics, update_log=manifest)


def unlearn_body(
    job: Job, inputs: JobInputs, device: torch.device, progress: Progress, started: float, hooks: Hooks
) -> Result:
    blocks = inputs.blocks
    train_rows = blocks.rows("train", exclude_ids=inputs.erased_ids)
    forget_rows = blocks.rows_of(inputs.scope_values)  # scope: document IDs (validated as training ones)
    sets = {
        "forget": inputs.tensors(forget_rows, device, with_ids=True),
        "retain": inputs.tensors(np.setdiff1d(train_rows, forget_rows), device, with_ids=True),
        "test": inputs.tensors(blocks.held_out("evaluation"), device, with_ids=True),
    }
    eval_sets = {**sets, "retain": sample_rows(sets["retain"], get_settings().eval_retain_max_rows)}
    calibration = inputs.tensors(blocks.held_out("calibration"), device, with_ids=True)
    data = GateData(
        forget=sets["forget"],
        evaluation=sets["test"],
        scope="sample_ids",
        retain_sample=eval_sets["retain"],
        kind="language_model",
    )
    log = DbUpdateLogReader(inputs.update_log_id) if inputs.update_log_id else None

    def new_task(model: nn.Module) -> UnlearningTask:
        return UnlearningTask(
            model=model,
            build_model=lambda: inputs.build_model(device),
            recipe=inputs.recipe,
            forget=sets["forget"],
            retain=sets["retain"],
            scope="sample_ids",
            num_classes=inputs.num_classes,
            device=device,
            progress=progress,
            holdout=calibration,  # the only held-out documents a method may read
            update_log=log,
            kind="language_model",
            objective=CAUSAL_LM,
        )

    return verified_result(
        job,
        inputs,
        new_task,
        lambda model: lm_verification(model, eval_sets, forget_key="forget", holdout_key="test"),
        data,
        eval_sets,
        hooks,
        started,
        device,
        reference_rows=len(sets["test"]),
        roles={"calibration": len(set(calibration.ids)), "evaluation": len(set(sets["test"].ids))},
    )
