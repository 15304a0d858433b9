"""partial_amnesiac (seed paper 000, Gogineni & Nadimi, arXiv 2403.07611): amnesiac unlearning with
layer-wise pruned updates. The log keeps only the top-p entries of each tensor's delta (default
p = 0.1), so storage is a fraction of the dense log, and only those entries are subtracted; the paper
finds no fine-tuning needed afterwards."""

from __future__ import annotations

from workers.engine.methods.amnesiac import run_subtraction
from workers.engine.methods.base import UnlearningMethod, UnlearningTask
from workers.engine.methods.catalog import PartialAmnesiacParams, PartialAmnesiacSpec


class PartialAmnesiac(PartialAmnesiacSpec, UnlearningMethod):
    def planned_steps(self, task: UnlearningTask, params: PartialAmnesiacParams) -> int:
        return len(task.update_log.steps_containing(task.forget.ids or []))

    def run(self, task: UnlearningTask, params: PartialAmnesiacParams):
        prune = params.top_p if task.update_log.config.mode == "dense" else None
        return run_subtraction(task, params, prune_top_p=prune)
