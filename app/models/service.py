from __future__ import annotations

import math
import shutil
import tempfile
import uuid
from typing import Any, BinaryIO

from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.errors import Conflict, Gone, Invalid, NotFound, ProblemError, pydantic_errors
from app.core.ids import uuid7
from app.core.server_paths import allowed_file
from app.datasets import service as datasets
from app.datasets.tables import Dataset
from app.db.types import utcnow
from app.jobs import service as jobs
from app.jobs.tables import Job
from app.models import repository, retention
from app.models.schemas import ModelSpec
from app.models.tables import Model, ModelVersion
from app.models.weights import check_against, tensor_shapes
from app.storage import StoredArtifact, get_artifact_store
from workers.engine import architectures
from workers.engine.architectures.catalog import EMBEDDING_LAYERS, GPT2ArchConfig, gpt2_vocab_size, resolve_layer_groups
from workers.engine.log_manifest import RecorderConfig


def get_model(db: Session, model_id: uuid.UUID, *, tenant_id: str) -> Model:
    """The model, if it is this tenant's: another tenant's is as absent as a missing one (404)."""
    model = repository.get(db, model_id)
    if model is None or model.tenant_id != tenant_id:
        raise NotFound("model", model_id)
    return model


def get_version(db: Session, model_id: uuid.UUID, version: int, *, tenant_id: str) -> ModelVersion:
    return _version_of(db, get_model(db, model_id, tenant_id=tenant_id), version)


def _version_of(db: Session, model: Model, version: int) -> ModelVersion:
    found = repository.get_version(db, model.id, version)
    if found is None:
        raise NotFound("model version", f"{model.id} v{version}")
    return found


DATASET_FORMAT = {"classifier": "arrays", "language_model": "text"}  # what each kind of architecture trains on


def kind_of(architecture: str) -> str:
    """``classifier`` or ``language_model`` (an architecture not in the registry counts as a classifier)."""
    found = architectures.registry().get(architecture)
    return found.kind if found is not None else "classifier"


def layer_prefixes(architecture: str, layers: list[str]) -> list[str] | None:
    """Layer names as parameter-name prefixes: a language model's group names (embedding, block0, ...)
    resolved; None for "all of them"."""
    return resolve_layer_groups(layers) if kind_of(architecture) == "language_model" else layers


def _check_spec(db: Session, spec: ModelSpec, tenant_id: str) -> tuple[Dataset, dict[str, tuple[int, ...]]]:
    """The dataset exists and suits the architecture, the name is free, and the architecture builds
    for this data and config."""
    dataset = datasets.get_dataset(db, spec.dataset_id, tenant_id=tenant_id)
    if spec.architecture in architectures.registry():
        _check_dataset_format(kind_of(spec.architecture), spec.architecture, dataset)
    try:
        shapes = tensor_layout(spec.architecture, spec.config, dataset)
    except ValidationError as exc:
        raise ProblemError(
            422,
            "validation-error",
            "Invalid architecture config",
            f"the config does not fit architecture {spec.architecture!r}",
            errors=pydantic_errors(exc.errors(include_input=False), ("body", "config")),
        ) from None
    except architectures.ArchitectureError as exc:
        raise Invalid(str(exc), title="Unusable architecture") from None
    if spec.update_log is not None:
        spec.update_log = _resolve_gradient_layers(spec.update_log, spec.architecture)
        _check_layers(spec.update_log, shapes)
    if repository.get_by_name(db, tenant_id, spec.name) is not None:
        raise Conflict(f"a model named {spec.name!r} already exists")
    return dataset, shapes


def _check_dataset_format(kind: str, architecture: str, dataset: Dataset) -> None:
    wanted = DATASET_FORMAT.get(kind)
    if wanted is not None and dataset.format != wanted:
        what = {"arrays": "an array (.npz) dataset", "text": "a text (JSON Lines) dataset"}
        raise Invalid(
            f"{architecture!r} is a {kind.replace('_', ' ')}: it trains on {what[wanted]}, and dataset "
            f"{dataset.id} is {what[dataset.format]}",
            slug="architecture-dataset-mismatch",
            title="Architecture does not fit the dataset",
            architecture_kind=kind,
            dataset_format=dataset.format,
        )


def tensor_layout(architecture: str, config: dict[str, Any], dataset: Dataset) -> dict[str, tuple[int, ...]]:
    """The tensors (names, shapes) a checkpoint of this architecture holds for this dataset. A
    classifier's input shape and classes come from the dataset; a language model's input is
    (context_length,) and its classes are its tokenizer's vocabulary (BPE files only from allowed
    server directories). Raises pydantic.ValidationError / ArchitectureError."""
    if dataset.format != "text":
        return architectures.expected_tensors(
            architecture, config, tuple(dataset.input_shape), max(dataset.classes) + 1
        )
    cfg = architectures.parse_config(architecture, config)
    vocab_size = _vocab_size(cfg, dataset.tenant_id)
    return architectures.expected_tensors(architecture, config, (cfg.context_length,), vocab_size)


def _vocab_size(cfg: GPT2ArchConfig, tenant_id: str) -> int:
    if cfg.tokenizer == "byte":
        return gpt2_vocab_size(cfg)
    vocab = allowed_file(cfg.bpe_vocab_path, field="config.bpe_vocab_path", tenant_id=tenant_id)
    merges = allowed_file(cfg.bpe_merges_path, field="config.bpe_merges_path", tenant_id=tenant_id)
    try:
        resolved = cfg.model_copy(update={"bpe_vocab_path": str(vocab), "bpe_merges_path": str(merges)})
        return gpt2_vocab_size(resolved)
    except Exception as exc:  # a malformed vocab.json / merges.txt: say so, without echoing its content
        raise Invalid(
            f"the BPE tokenizer files could not be loaded ({type(exc).__name__}): bpe_vocab_path must be a "
            "GPT-2 vocab.json and bpe_merges_path its merges.txt",
            title="Unusable tokenizer files",
        ) from None


def _resolve_gradient_layers(config: RecorderConfig, architecture: str) -> RecorderConfig:
    """``first_epoch_gradients: []`` asks for the architecture's default layers: a language model's
    token embedding (what gradient ascent restricted to the embedding needs); a classifier has no
    default. A language model's group names (``embedding``, ``block0``, ...) become the parameter
    prefixes they stand for, so the stored spec says exactly what is recorded."""
    layers = config.first_epoch_gradients
    if layers is None:
        return config
    is_lm = kind_of(architecture) == "language_model"
    if not layers:
        if not is_lm:
            raise Invalid(
                "update_log.first_epoch_gradients is empty: name the layers to record (only language models "
                "have a default, their token embedding)",
                title="Unknown layers",
            )
        layers = list(EMBEDDING_LAYERS)
    elif is_lm:
        layers = resolve_layer_groups(layers)
        if layers is None:  # "all"
            raise Invalid(
                "update_log.first_epoch_gradients: per-sample gradients of every parameter of a language model "
                "are too large to keep; name layers (default: the embedding)",
                title="Unknown layers",
            )
    return config.model_copy(update={"first_epoch_gradients": layers})


def _check_layers(config: RecorderConfig, shapes: dict[str, tuple[int, ...]]) -> None:
    """Layer names in an update-log spec must name layers of the architecture."""
    named = [*(config.first_epoch_gradients or []), *config.top_p_per_layer]
    unknown = [n for n in named if not any(k == n or k.startswith(n + ".") for k in shapes)]
    if unknown:
        layers = sorted({k.rsplit(".", 1)[0] for k in shapes})
        raise Invalid(
            f"update_log names layers the architecture does not have: {unknown}; its layers: {layers}",
            title="Unknown layers",
        )


def _new_model(spec: ModelSpec, state: str, tenant_id: str, shapes: dict[str, tuple[int, ...]]) -> Model:
    arch_config = architectures.parse_config(spec.architecture, spec.config).model_dump()
    return Model(
        id=uuid7(),
        tenant_id=tenant_id,
        name=spec.name,
        architecture=spec.architecture,
        arch_config=arch_config,
        dataset_id=spec.dataset_id,
        recipe=spec.recipe.model_dump(),
        update_log_spec=spec.update_log.model_dump() if spec.update_log else None,
        state=state,
        head_version=None,
        device_class=spec.device_class,
        parameter_count=sum(math.prod(shape) for shape in shapes.values()),
        created_at=utcnow(),
    )


def _audit_registered(db: Session, model: Model, how: str, actor: str) -> None:
    audit.record(
        db,
        action="model.registered",
        actor=actor,
        tenant_id=model.tenant_id,
        entity_type="model",
        entity_id=model.id,
        model_id=model.id,
        payload={
            "name": model.name,
            "architecture": model.architecture,
            "dataset_id": str(model.dataset_id),
            "weights": how,
        },
    )


def register_for_training(db: Session, spec: ModelSpec, *, tenant_id: str, actor: str) -> tuple[Model, Job]:
    _, shapes = _check_spec(db, spec, tenant_id)
    model = _new_model(spec, "TRAINING", tenant_id, shapes)
    repository.add(db, model)
    _audit_registered(db, model, "train", actor)
    job = jobs.create(db, kind="train", model=model, method="train", params={}, request_ids=[], actor=actor)
    return model, job


def register_with_weights(db: Session, spec: ModelSpec, weights: BinaryIO, *, tenant_id: str, actor: str) -> Model:
    if spec.update_log is not None:
        raise Invalid(
            "update_log records training as it happens; it cannot be set for uploaded weights",
            title="No update log for uploaded weights",
        )
    _, expected = _check_spec(db, spec, tenant_id)
    with tempfile.NamedTemporaryFile(suffix=".safetensors") as tmp:
        shutil.copyfileobj(weights, tmp, 1024 * 1024)
        tmp.flush()
        check_against(tensor_shapes(tmp.name), expected)
        tmp.seek(0)
        stored = get_artifact_store().put_stream(tmp, kind="checkpoints", suffix=".safetensors")
    model = _new_model(spec, "READY", tenant_id, expected)
    repository.add(db, model)
    _audit_registered(db, model, "upload", actor)
    add_version(db, model=model, version=1, parent=None, artifact=stored, job_id=None, metrics={}, actor=actor)
    return model


def add_version(
    db: Session,
    *,
    model: Model,
    version: int,
    parent: int | None,
    artifact: StoredArtifact,
    job_id: uuid.UUID | None,
    metrics: dict[str, Any],
    actor: str,
) -> ModelVersion:
    row = ModelVersion(
        id=uuid7(),
        model_id=model.id,
        version=version,
        parent_version=parent,
        artifact_key=artifact.key,
        sha256=artifact.sha256,
        size_bytes=artifact.size,
        state="ACTIVE",
        created_by_job_id=job_id,
        metrics=metrics,
        created_at=utcnow(),
    )
    repository.add_version(db, row)
    audit.record(
        db,
        action="model.version_created",
        actor=actor,
        tenant_id=model.tenant_id,
        entity_type="model_version",
        entity_id=f"{model.id}/v{version}",
        model_id=model.id,
        job_id=job_id,
        payload={"version": version, "parent_version": parent, "sha256": artifact.sha256, "size_bytes": artifact.size},
    )
    return row


def version_for_download(db: Session, model_id: uuid.UUID, version: int, *, tenant_id: str, actor: str) -> ModelVersion:
    """The version whose checkpoint may be served, its download recorded (by which key: ``actor``);
    410 once it is retired."""
    model = get_model(db, model_id, tenant_id=tenant_id)
    found = _version_of(db, model, version)
    if found.state == retention.RETIRED:
        raise Gone(
            f"version {version} of model {model_id} was retired at {found.retired_at.isoformat()} by erasure job "
            f"{found.retired_by_job_id}: it still held erased samples"
            + (", and its file has been purged" if found.purged_at else ", and its file is being purged"),
            slug="version-retired",
            title="Version retired",
            head_version=model.head_version,
        )
    record_download(db, found, tenant_id=tenant_id, actor=actor)
    return found


def record_download(db: Session, version: ModelVersion, *, tenant_id: str, actor: str) -> None:
    audit.record(
        db,
        action="checkpoint.downloaded",
        actor=actor,
        tenant_id=tenant_id,
        entity_type="model_version",
        entity_id=f"{version.model_id}/v{version.version}",
        model_id=version.model_id,
        payload={"version": version.version, "sha256": version.sha256},
    )
