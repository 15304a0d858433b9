from __future__ import annotations

import hashlib
import io

import pytest

from app.settings import Settings
from app.storage import ArtifactIntegrityError, ArtifactMissingError, LocalArtifactStore


@pytest.fixture(autouse=True)
def _no_unlearnd_env(monkeypatch):
    """The integration fixtures point this process at the test stack; these tests want the defaults."""
    import os

    for key in [k for k in os.environ if k.startswith("UNLEARND_")]:
        monkeypatch.delenv(key)


def test_production_refuses_unsafe_defaults():
    with pytest.raises(ValueError) as info:
        Settings(env="production")
    message = str(info.value)
    assert "SQLite" in message and "memory://" in message and "SUBJECT_HMAC_KEY" in message
    ok = Settings(
        env="production",
        database_url="postgresql+psycopg://u@db/x",
        broker_url="redis://r:6379/0",
        subject_hmac_key="k" * 40,
    )
    assert ok.effective_redis_url == "redis://r:6379/0"
    assert Settings().env == "development" and Settings().is_sqlite


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("UNLEARND_JOB_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("UNLEARND_QUEUE_NAME", "gpu-a100")
    s = Settings()
    assert s.job_max_attempts == 7 and s.queue_name == "gpu-a100"


def test_local_store_is_content_addressed_atomic_and_verified(tmp_path):
    store = LocalArtifactStore(tmp_path)
    data = b"weights" * 1000
    art = store.put_stream(io.BytesIO(data), kind="checkpoints", suffix=".safetensors")
    assert art.sha256 == hashlib.sha256(data).hexdigest() and art.size == len(data)
    assert art.key == f"checkpoints/{art.sha256[:2]}/{art.sha256}.safetensors"
    assert store.read_verified(art.key, art.sha256) == data
    assert list((tmp_path / ".staging").iterdir()) == []  # nothing half-written left behind

    (tmp_path / art.key).write_bytes(b"tampered")
    with pytest.raises(ArtifactIntegrityError):
        store.read_verified(art.key, art.sha256)
    assert store.delete(art.key) and not store.exists(art.key) and not store.delete(art.key)
    with pytest.raises(ArtifactMissingError):
        store.iter_verified(art.key, art.sha256)
    with pytest.raises(ValueError):
        store.open("../../etc/passwd")
