from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from app.settings import get_settings
from app.storage.base import CHUNK, ArtifactMissingError, ArtifactStore, StoredArtifact

_KEY = re.compile(r"^[a-z_]+/[0-9a-f]{2}/[0-9a-f]{64}(\.[a-z0-9]+)?$")


class LocalArtifactStore(ArtifactStore):
    """Files under one root directory; writes go to a staging file, then an atomic rename."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._staging = self.root / ".staging"
        self._staging.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not _KEY.match(key):  # keys come from our own database, but never trust a path blindly
            raise ValueError(f"not an artifact key: {key!r}")
        return self.root / key

    def put_stream(self, stream: BinaryIO, *, kind: str, suffix: str = "") -> StoredArtifact:
        staging = self._staging / uuid.uuid4().hex
        digest, size = hashlib.sha256(), 0
        try:
            with open(staging, "wb") as out:
                while chunk := stream.read(CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            key = self.key_for(kind, sha, suffix)
            final = self._path(key)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging, final)
        finally:
            staging.unlink(missing_ok=True)
        return StoredArtifact(key=key, sha256=sha, size=size)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError as exc:
            raise ArtifactMissingError(f"artifact {key} is missing from the store") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def keys_older_than(self, kind: str, seconds: float) -> list[str]:
        root = self.root / kind
        if not root.is_dir():
            return []
        keys = (p.relative_to(self.root).as_posix() for p in root.glob("*/*") if p.is_file())
        return sorted(k for k in keys if _KEY.match(k) and _older_than(self.root / k, seconds))

    def delete_stale_staging(self, seconds: float) -> int:
        stale = [p for p in self._staging.iterdir() if p.is_file() and _older_than(p, seconds)]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:  # deleted meanwhile
        return False


@lru_cache
def get_artifact_store() -> ArtifactStore:
    return LocalArtifactStore(get_settings().artifact_dir)
