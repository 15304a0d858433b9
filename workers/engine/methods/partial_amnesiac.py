"""partial_amnesiac (seed paper 000, Gogineni & Nadimi, arXiv 2403.07611): amnesiac unlearning with
layer-wise pruned updates. The log keeps only the top-p entries of each tensor's delta (default
p = 0.1), so storage is a fraction of the dense log, and only those entries are subtracted; the paper
finds no fine-tuning needed afterwards."""

from __future__ import annotations

from pydantic import Field

from workers.engine.methods.amnesiac import AmnesiacParams, run_subtraction
from workers.engine.methods.base import UnlearningMethod, UnlearningTask


class PartialAmnesiacParams(AmnesiacParams):
    repair_epochs: int | None = Field(0, ge=0, le=20, description="Fine-tuning epochs afterwards (default 0).")
    top_p: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Only for a model whose log is dense: prune each stored delta to its top-p entries per "
        "tensor when subtracting. A pruned log is subtracted as stored (its p was fixed when recording).",
    )


class PartialAmnesiac(UnlearningMethod):
    name = "partial_amnesiac"
    summary = (
        "Amnesiac with layer-wise pruned updates: subtract only the top-p entries per tensor (needs an update log)."
    )
    Params = PartialAmnesiacParams
    needs_update_log = True

    def planned_steps(self, task: UnlearningTask, params: PartialAmnesiacParams) -> int:
        return len(task.update_log.steps_containing(task.forget.ids or []))

    def run(self, task: UnlearningTask, params: PartialAmnesiacParams):
        prune = params.top_p if task.update_log.config.mode == "dense" else None
        return run_subtraction(task, params, prune_top_p=prune)
