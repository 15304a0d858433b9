"""Settings, read from environment variables prefixed ``UNLEARND_`` (see the README's table).

The defaults are the embedded development setup: a SQLite file, an in-memory broker and a local
artifact directory. ``UNLEARND_ENV=production`` refuses the defaults that are unsafe there.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from workers.engine.verification.policy import (  # torch-free
    LOOSEST,
    VerificationChange,
    VerificationPolicy,
    check_change,
)

DEV_SUBJECT_KEY = "dev-only-subject-key-change-me"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UNLEARND_", env_nested_delimiter="__", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    database_url: str = "sqlite:///var/unlearnd.db"
    broker_url: str = "memory://localhost/"
    # Redis used by /readyz and live progress; empty means "the broker, if it is Redis".
    redis_url: str = ""
    queue_name: str = "unlearnd"
    artifact_dir: Path = Path("var/artifacts")

    # Worker behaviour
    device: Literal["auto", "cpu", "cuda"] = "auto"
    deterministic: bool = Field(
        True,
        description="On CUDA: deterministic kernels, no cuDNN autotuning and no TF32, so that a run repeats "
        "bit for bit; false trades that for speed (workers/engine/device.py, docs/decisions/cuda-engine.md). "
        "No effect on the CPU.",
    )
    # Jobs go to the queue of their model's device class, `<queue_name>.gpu` or `<queue_name>.cpu`
    # (app/queue.py). A model whose device_class is "auto" goes to the cpu queue when it has fewer
    # parameters than this. 1 M: the small classifiers (cnn_small 4-14 k, mlp) train in seconds to a
    # couple of minutes on CPU cores (MNIST's retrain: 99 s on 2 cores, benchmarks/results/forgetting-mnist.md),
    # while the language-model benchmark's GPT-2 of 1.3 M parameters took 233 s for its pretraining on
    # 2 cores (language-models-tinyshakespeare.md), seconds on a GPU, and resnet18 (2.8 M at width 32)
    # convolves every pixel: from about a million parameters up the GPU is worth its slot.
    cpu_max_parameters: int = Field(1_000_000, ge=0)
    job_max_attempts: int = Field(3, ge=1, le=20)
    # a QUEUED job re-sent this many times while its model was idle and a worker of its queue idle fails
    job_max_unclaimed_sends: int = Field(10, ge=1)
    job_lease_seconds: int = Field(120, ge=5)
    # A recycled child re-imports torch (seconds): recycle rarely, for GPU memory fragmentation.
    worker_max_tasks_per_child: int = Field(200, ge=1)
    # Each worker writes a heartbeat this often (and at once when its job changes); it lives 3x as
    # long. A running job whose worker's heartbeat is gone is taken back by the reconciler.
    worker_heartbeat_interval_s: float = Field(10.0, ge=1, le=300)
    # Celery's Redis visibility timeout: must exceed the longest job, or Redis redelivers it.
    broker_visibility_timeout_s: int = Field(6 * 3600, ge=60)
    # Reconciler: re-enqueue jobs QUEUED for longer than this; how often beat runs it.
    reconcile_queued_after_s: int = Field(60, ge=1)
    reconcile_interval_s: int = Field(30, ge=1)
    # Per-batch records are flushed (and cancellation checked) at least this often.
    batch_flush_interval_s: float = Field(0.5, gt=0, le=30)
    # A worker retries a job's state writes (progress, verifying, the final transaction) this long
    # while the database is unreachable, before giving the job up to the reconciler.
    worker_db_retry_s: float = Field(120.0, ge=0)
    # Evaluation: retain accuracy is measured on at most this many retain rows (seeded sample).
    eval_retain_max_rows: int = Field(10_000, ge=100)
    # The verification gate's default thresholds (UNLEARND_VERIFICATION__MIA_MARGIN=0.03, ...); a
    # request may tighten them, or loosen them within fixed bounds with a reason.
    verification: VerificationPolicy = Field(default_factory=VerificationPolicy)

    # Requests
    max_upload_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # An .npz dataset's arrays together, decompressed: checked from the archive's headers before any
    # array is decompressed (a 1 MB zip of zeros can hold gigabytes).
    max_dataset_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    max_ids_per_request: int = Field(100_000, ge=1)
    # Threads per API process for its sync endpoints (anyio's default is 40): at 50 clients on 2 cores,
    # POST p99 158 ms with 2, 225 with 40; bursts 92 against 139 requests/s (benchmarks/results/service-api-threads/).
    api_threads: int = Field(2, ge=1, le=256)
    # Whether an API process chains the audit events of its own commits (about 0.2 s after). Off, a
    # worker's periodic pass chains them (audit_chain_poll_s); on, at 50 clients POST p99 was 110-125 ms
    # against 79 off (benchmarks/results/service-api-chains-audit/).
    api_chains_audit: bool = False
    # How often every worker process looks for audit events another process (the API) left unchained.
    audit_chain_poll_s: float = Field(1.0, gt=0, le=60)
    # Server directories the API may read registered files from (datasets by `server_path`, BPE
    # tokenizer files), separated by os.pathsep (":" on Linux); a tenant reads only under
    # <root>/<tenant id>/ (app/core/server_paths.py). Empty: server paths are refused.
    dataset_roots: str = ""
    # Requests for a model that arrive while its queued job has not started join that job (one run
    # for all of them); at most this many requests per job. 0 turns coalescing off.
    coalesce_max_requests: int = Field(1000, ge=0)
    request_due_days: int = Field(30, ge=1)
    # how long a version retired by an erasure keeps its file before the purge deletes it (0: at once)
    retired_version_grace_s: int = Field(0, ge=0)
    # checkpoint files no version names (a worker killed before its commit) are deleted once this old
    orphan_checkpoint_grace_s: int = Field(3600, ge=60)
    subject_hmac_key: str = DEV_SUBJECT_KEY
    # how long an API process remembers a key lookup (a revoked key works elsewhere at most this long)
    api_key_cache_s: float = Field(2.0, ge=0, le=60)
    # Ed25519 key (PKCS8 PEM) that signs deletion certificates; generated there (0600) if missing.
    signing_key_file: Path = Path("var/signing-key.pem")

    # Embedded mode
    host: str = "127.0.0.1"
    port: int = 8000
    demo: bool = True
    log_level: str = "INFO"
    # text for a terminal; json (one object per line, with request/job ids) for log shippers
    log_format: Literal["text", "json"] = "text"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def dataset_root_paths(self) -> list[Path]:
        """The allowed roots, resolved (symlinks and ``..`` followed); empty entries ignored."""
        return [Path(p).expanduser().resolve() for p in self.dataset_roots.split(os.pathsep) if p.strip()]

    @property
    def effective_redis_url(self) -> str:
        if self.redis_url:
            return self.redis_url
        return self.broker_url if self.broker_url.startswith("redis") else ""

    @model_validator(mode="after")
    def _verification_within_bounds(self) -> Settings:
        """An operator sets the defaults, but not past the bounds a request's loosening stops at."""
        problems = check_change(
            VerificationPolicy(),
            VerificationChange(**self.verification.model_dump(include=set(LOOSEST)), reason="operator"),
        )
        if problems:
            raise ValueError("UNLEARND_VERIFICATION__*: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production_defaults(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.is_sqlite:
            problems.append("UNLEARND_DATABASE_URL must point at Postgres, not SQLite")
        if self.broker_url.startswith("memory"):
            problems.append("UNLEARND_BROKER_URL must be a real broker (redis://...), not memory://")
        if self.subject_hmac_key == DEV_SUBJECT_KEY or len(self.subject_hmac_key) < 32:
            problems.append("UNLEARND_SUBJECT_HMAC_KEY must be set to a secret of 32+ characters")
        if problems:
            raise ValueError("unsafe production settings: " + "; ".join(problems))
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
