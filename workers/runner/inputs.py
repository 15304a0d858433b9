"""Everything a job reads before it runs: the model's definition, its data, the checkpoint, the scope.

An array dataset (.npz) feeds a classifier row by row. A text dataset (JSON Lines) feeds a language
model: its documents are tokenized with the model's tokenizer and packed into blocks of the model's
context length, each block labelled with its document's ID; tombstoned documents are left out.

Tombstones are found by sample ID: once an erasure has succeeded, its rows leave the stored file
(app/datasets/file_erasure.py), so ``dataset_samples.row_index`` (the position as registered) is no
position in the file read here, and rows already removed are simply not there. That rewrite may
delete the file a job was about to read: :func:`load_inputs` then reads the dataset row again."""

from __future__ import annotations

import logging
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
from app.storage import ArtifactMissingError, get_artifact_store
from workers.engine import architectures, checkpoints
from workers.engine.architectures.gpt2 import tokenizer_for
from workers.engine.datasets import ArrayDataset
from workers.engine.device import prepare_model
from workers.engine.methods import MethodNotApplicable
from workers.engine.recipe import TrainingRecipe
from workers.engine.stored_datasets import load_jsonl, load_npz, rows_holding
from workers.engine.tensors import LabelledTensors
from workers.engine.text import PackedBlocks, TextDataset, lm_tensors, pack_dataset
from workers.engine.update_log import RecorderConfig
from workers.engine.verification.plan import AUTO

log = logging.getLogger(__name__)
# methods that never read the forget set's data (only its metrics do): they can still serve samples
# whose rows an earlier erasure already removed from the stored file
WITHOUT_FORGET_DATA = ("retrain", "finetune")


class ForgetDataErased(MethodNotApplicable):
    """Samples to forget whose data already left the stored dataset, for a method that needs it."""


@dataclass
class JobInputs:
    architecture: str
    arch_config: dict
    recipe: TrainingRecipe
    num_classes: int  # a language model's: its tokenizer's vocabulary size
    dataset: ArrayDataset | None  # array datasets (classifiers)
    erased_rows: np.ndarray  # tombstoned rows in the file this job reads (for text: documents, in file order)
    input_shape: tuple[int, ...] = ()  # a language model's: (context_length,)
    kind: str = "classifier"  # or "language_model"
    blocks: PackedBlocks | None = None  # text datasets: the documents packed into ID-labelled blocks
    erased_ids: list[str] = field(default_factory=list)  # text datasets: the tombstoned documents' IDs
    checkpoint: tuple[str, str] | None = None  # (artifact key, sha256) of the source version
    scope_type: str | None = None
    scope_values: list = field(default_factory=list)  # sample scope: those the file still holds
    scope_erased_from_file: int = 0  # samples to forget whose rows an earlier erasure removed from the file
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
    return load_npz(get_artifact_store().read_verified(key, sha256))


@lru_cache(maxsize=2)
def _text(key: str, sha256: str) -> TextDataset:
    return load_jsonl(get_artifact_store().read_verified(key, sha256))


@lru_cache(maxsize=2)
def _packed(key: str, sha256: str, tokenizer: tuple, context_length: int) -> tuple[PackedBlocks, int]:
    """The text packed for one tokenizer and context length, and the tokenizer's vocabulary size.
    ``tokenizer`` is (kind, vocab path, merges path): what the arch config says."""
    kind, vocab_path, merges_path = tokenizer
    tok = tokenizer_for({"tokenizer": kind, "bpe_vocab_path": vocab_path, "bpe_merges_path": merges_path})
    return pack_dataset(_text(key, sha256), tok, context_length), tok.vocab_size


_read_keys: dict[uuid.UUID, str] = {}  # dataset -> the file key this process read last


def _drop_replaced(dataset_id: uuid.UUID, key: str) -> None:
    """A dataset's file was rewritten (rows erased from it): parsed copies of the old one leave memory."""
    if _read_keys.get(dataset_id, key) != key:
        for cached in (_dataset, _text, _packed):
            cached.cache_clear()
    _read_keys[dataset_id] = key


def load_inputs(job: Job) -> JobInputs:
    try:
        return _load_inputs(job)
    except ArtifactMissingError:  # the dataset's file was rewritten and the old one deleted meanwhile
        log.info("job %s: the dataset file it was reading was replaced; reading the current one", job.id)
        return _load_inputs(job)


def _load_inputs(job: Job) -> JobInputs:
    with session_scope() as db:
        model = models_repo.get(db, job.model_id)
        ds_row = datasets.get_dataset(db, model.dataset_id, tenant_id=model.tenant_id)
        inputs = JobInputs(
            architecture=model.architecture,
            arch_config=model.arch_config,
            recipe=TrainingRecipe.model_validate(model.recipe),
            num_classes=0,
            dataset=None,
            erased_rows=np.zeros(0, dtype=np.int64),
            kind=architectures.get_architecture(model.architecture).kind,
            model_id=str(model.id),
            update_log_spec=RecorderConfig.model_validate(model.update_log_spec) if model.update_log_spec else None,
            update_log_id=model.update_log_id,
        )
        _drop_replaced(ds_row.id, ds_row.artifact_key)
        erased = datasets.erased_sample_ids(db, ds_row.id)
        if ds_row.format == "text":
            cfg = architectures.parse_config(model.architecture, model.arch_config)
            tokenizer = (cfg.tokenizer, cfg.bpe_vocab_path, cfg.bpe_merges_path)
            inputs.blocks, inputs.num_classes = _packed(
                ds_row.artifact_key, ds_row.sha256, tokenizer, cfg.context_length
            )
            inputs.input_shape = (cfg.context_length,)
            file_ids = _text(ds_row.artifact_key, ds_row.sha256).ids
            inputs.erased_rows = rows_holding(file_ids, erased)
            inputs.erased_ids = file_ids[inputs.erased_rows].tolist()
        else:
            inputs.dataset = _dataset(ds_row.artifact_key, ds_row.sha256)
            file_ids = inputs.dataset.ids
            inputs.erased_rows = rows_holding(file_ids, erased)
            inputs.num_classes = max(ds_row.classes) + 1
            inputs.input_shape = inputs.dataset.input_shape
        if job.source_version is not None:
            version = models_repo.get_version(db, model.id, job.source_version)
            inputs.checkpoint = (version.artifact_key, version.sha256)
        for rid in jobs_repo.request_ids_of(db, job.id):
            fr = requests_repo.get(db, rid)
            inputs.scope_type = fr.scope_type
            inputs.scope_values = list(dict.fromkeys([*inputs.scope_values, *fr.scope_values]))
    if inputs.scope_type == "sample_ids":
        _keep_samples_in_file(job, inputs, file_ids)
    return inputs


def _keep_samples_in_file(job: Job, inputs: JobInputs, file_ids: np.ndarray) -> None:
    """Samples an earlier erasure (through another model of the dataset) already removed from the
    file have no data left to unlearn from: only a method that needs none can serve them."""
    held = set(file_ids[rows_holding(file_ids, inputs.scope_values)].tolist())
    gone = sum(1 for s in inputs.scope_values if s not in held)
    if not gone:
        return
    if job.method not in (*WITHOUT_FORGET_DATA, AUTO):  # auto plans retrain alone then (runner/attempts.py)
        raise ForgetDataErased(
            f"{gone} of the {len(inputs.scope_values)} samples to forget were already erased from the stored "
            f"dataset by an earlier erasure, so their data is gone and {job.method} cannot unlearn them from "
            "this model; use method retrain (exact), which needs none"
        )
    inputs.scope_values = [s for s in inputs.scope_values if s in held]
    inputs.scope_erased_from_file = gone
