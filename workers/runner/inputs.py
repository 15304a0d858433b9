"""Everything a job reads before it runs: the model's definition, its data, the checkpoint, the scope.

An array dataset (.npz) feeds a classifier row by row. A text dataset (JSON Lines) feeds a language
model: its documents are tokenized with the model's tokenizer and packed into blocks of the model's
context length, each block labelled with its document's ID; tombstoned documents are left out."""

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
from workers.engine.architectures.gpt2 import tokenizer_for
from workers.engine.datasets import ArrayDataset, parse_npz
from workers.engine.device import prepare_model
from workers.engine.recipe import TrainingRecipe
from workers.engine.tensors import LabelledTensors
from workers.engine.text import PackedBlocks, TextDataset, lm_tensors, pack_dataset, parse_jsonl
from workers.engine.update_log import RecorderConfig


@dataclass
class JobInputs:
    architecture: str
    arch_config: dict
    recipe: TrainingRecipe
    num_classes: int  # a language model's: its tokenizer's vocabulary size
    dataset: ArrayDataset | None  # array datasets (classifiers)
    erased_rows: np.ndarray  # tombstoned dataset rows (for text: documents, in file order)
    input_shape: tuple[int, ...] = ()  # a language model's: (context_length,)
    kind: str = "classifier"  # or "language_model"
    blocks: PackedBlocks | None = None  # text datasets: the documents packed into ID-labelled blocks
    erased_ids: list[str] = field(default_factory=list)  # text datasets: the tombstoned documents' IDs
    checkpoint: tuple[str, str] | None = None  # (artifact key, sha256) of the source version
    scope_type: str | None = None
    scope_values: list = field(default_factory=list)
    model_id: str = ""
    update_log_spec: RecorderConfig | None = None  # record the training (train jobs)
    update_log_id: uuid.UUID | None = None  # the log describing the source version (unlearn jobs)

    def build_model(self, device: torch.device) -> nn.Module:
        model = architectures.build_model(self.architecture, self.arch_config, self.input_shape, self.num_classes)
        return prepare_model(model, device)

    def load_source_model(self, device: torch.device) -> nn.Module:
        key, sha = self.checkpoint
        model = self.build_model(device)
        checkpoints.load_into(model, get_artifact_store().read_verified(key, sha))
        return model.eval()

    def tensors(self, rows: np.ndarray, device: torch.device, with_ids: bool = False) -> LabelledTensors:
        """Rows of the array dataset, or blocks of the packed text (token IDs; labels -100 on padding)."""
        if self.blocks is not None:
            return lm_tensors(self.blocks, rows, device, with_ids=with_ids)
        ds = self.dataset
        return LabelledTensors.from_arrays(
            ds.x[rows], ds.y[rows], ds.ids[rows].tolist() if with_ids else None, device=device
        )


@lru_cache(maxsize=2)
def _dataset(key: str, sha256: str) -> ArrayDataset:
    """Parsed datasets are kept per worker process: consecutive jobs on one model reuse them."""
    return parse_npz(get_artifact_store().read_verified(key, sha256))


@lru_cache(maxsize=2)
def _text(key: str, sha256: str) -> TextDataset:
    return parse_jsonl(get_artifact_store().read_verified(key, sha256))


@lru_cache(maxsize=2)
def _packed(key: str, sha256: str, tokenizer: tuple, context_length: int) -> tuple[PackedBlocks, int]:
    """The text packed for one tokenizer and context length, and the tokenizer's vocabulary size.
    ``tokenizer`` is (kind, vocab path, merges path): what the arch config says."""
    kind, vocab_path, merges_path = tokenizer
    tok = tokenizer_for({"tokenizer": kind, "bpe_vocab_path": vocab_path, "bpe_merges_path": merges_path})
    return pack_dataset(_text(key, sha256), tok, context_length), tok.vocab_size


def load_inputs(job: Job) -> JobInputs:
    with session_scope() as db:
        model = models_repo.get(db, job.model_id)
        ds_row = datasets.get_dataset(db, model.dataset_id, tenant_id=model.tenant_id)
        inputs = JobInputs(
            architecture=model.architecture,
            arch_config=model.arch_config,
            recipe=TrainingRecipe.model_validate(model.recipe),
            num_classes=0,
            dataset=None,
            erased_rows=datasets.erased_row_indices(db, ds_row.id),
            kind=architectures.get_architecture(model.architecture).kind,
            model_id=str(model.id),
            update_log_spec=RecorderConfig.model_validate(model.update_log_spec) if model.update_log_spec else None,
            update_log_id=model.update_log_id,
        )
        if ds_row.format == "text":
            cfg = architectures.parse_config(model.architecture, model.arch_config)
            tokenizer = (cfg.tokenizer, cfg.bpe_vocab_path, cfg.bpe_merges_path)
            inputs.blocks, inputs.num_classes = _packed(
                ds_row.artifact_key, ds_row.sha256, tokenizer, cfg.context_length
            )
            inputs.input_shape = (cfg.context_length,)
            inputs.erased_ids = _text(ds_row.artifact_key, ds_row.sha256).ids[inputs.erased_rows].tolist()
        else:
            inputs.dataset = _dataset(ds_row.artifact_key, ds_row.sha256)
            inputs.num_classes = max(ds_row.classes) + 1
            inputs.input_shape = inputs.dataset.input_shape
        if job.source_version is not None:
            version = models_repo.get_version(db, model.id, job.source_version)
            inputs.checkpoint = (version.artifact_key, version.sha256)
        for rid in jobs_repo.request_ids_of(db, job.id):
            fr = requests_repo.get(db, rid)
            inputs.scope_type = fr.scope_type
            inputs.scope_values = list(dict.fromkeys([*inputs.scope_values, *fr.scope_values]))
    return inputs
