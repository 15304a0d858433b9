"""Everything a job reads before it runs: the model's definition, its data, the checkpoint, the scope."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from app.datasets import service as datasets
from app.db import session_scope
from app.forget_requests import repository as requests_repo
from app.jobs import repository as jobs_repo
from app.jobs.tables import Job
from app.models import repository as models_repo
from app.storage import get_artifact_store
from workers.engine import architectures, checkpoints
from workers.engine.datasets import ArrayDataset, parse_npz
from workers.engine.device import prepare_model
from workers.engine.recipe import TrainingRecipe
from workers.engine.tensors import LabelledTensors
from workers.engine.update_log import RecorderConfig


@dataclass
class JobInputs:
    architecture: str
    arch_config: dict
    recipe: TrainingRecipe
    num_classes: int
    dataset: ArrayDataset
    erased_rows: np.ndarray
    checkpoint: tuple[str, str] | None = None  # (artifact key, sha256) of the source version
    scope_type: str | None = None
    scope_values: list = field(default_factory=list)
    model_id: str = ""
    update_log_spec: RecorderConfig | None = None  # record the training (train jobs)
    update_log_id: uuid.UUID | None = None  # the log describing the source version (unlearn jobs)

    def build_model(self, device: torch.device) -> nn.Module:
        model = architectures.build_model(
            self.architecture, self.arch_config, self.dataset.input_shape, self.num_classes
        )
        return prepare_model(model, device)

    def load_source_model(self, device: torch.device) -> nn.Module:
        key, sha = self.checkpoint
        model = self.build_model(device)
        checkpoints.load_into(model, get_artifact_store().read_verified(key, sha))
        return model.eval()

    def tensors(self, rows: np.ndarray, device: torch.device, with_ids: bool = False) -> LabelledTensors:
        ds = self.dataset
        return LabelledTensors.from_arrays(
            ds.x[rows], ds.y[rows], ds.ids[rows].tolist() if with_ids else None, device=device
        )


@lru_cache(maxsize=2)
def _dataset(key: str, sha256: str) -> ArrayDataset:
    """Parsed datasets are kept per worker process: consecutive jobs on one model reuse them."""
    return parse_npz(get_artifact_store().read_verified(key, sha256))


def load_inputs(job: Job) -> JobInputs:
    with session_scope() as db:
        model = models_repo.get(db, job.model_id)
        ds_row = datasets.get_dataset(db, model.dataset_id, tenant_id=model.tenant_id)
        inputs = JobInputs(
            architecture=model.architecture,
            arch_config=model.arch_config,
            recipe=TrainingRecipe.model_validate(model.recipe),
            num_classes=max(ds_row.classes) + 1,
            dataset=_dataset(ds_row.artifact_key, ds_row.sha256),
            erased_rows=datasets.erased_row_indices(db, ds_row.id),
            model_id=str(model.id),
            update_log_spec=RecorderConfig.model_validate(model.update_log_spec) if model.update_log_spec else None,
            update_log_id=model.update_log_id,
        )
        if job.source_version is not None:
            version = models_repo.get_version(db, model.id, job.source_version)
            inputs.checkpoint = (version.artifact_key, version.sha256)
        for rid in jobs_repo.request_ids_of(db, job.id):
            fr = requests_repo.get(db, rid)
            inputs.scope_type = fr.scope_type
            inputs.scope_values = list(dict.fromkeys([*inputs.scope_values, *fr.scope_values]))
    return inputs
