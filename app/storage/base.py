from __future__ import annotations

import abc
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 1024 * 1024


class ArtifactMissingError(FileNotFoundError):
    pass


class ArtifactIntegrityError(Exception):
    """The bytes read back do not hash to what was recorded: corruption or tampering."""


@dataclass(frozen=True)
class StoredArtifact:
    key: str
    sha256: str
    size: int


class ArtifactStore(abc.ABC):
    @abc.abstractmethod
    def put_stream(self, stream: BinaryIO, *, kind: str, suffix: str = "") -> StoredArtifact:
        """Store everything ``stream`` yields; visible under its key only once complete."""

    @abc.abstractmethod
    def open(self, key: str) -> BinaryIO:
        """Open for reading; raises ArtifactMissingError."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the artifact; False if it was not there."""

    @abc.abstractmethod
    def keys_older_than(self, kind: str, seconds: float) -> list[str]:
        """Keys of this kind last written more than ``seconds`` ago (for the orphan sweep)."""

    @abc.abstractmethod
    def delete_stale_staging(self, seconds: float) -> int:
        """Remove half-written uploads older than ``seconds`` (a writer killed mid-write)."""

    def put_bytes(self, data: bytes, *, kind: str, suffix: str = "") -> StoredArtifact:
        import io

        return self.put_stream(io.BytesIO(data), kind=kind, suffix=suffix)

    def iter_verified(self, key: str, sha256: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Open now (so a missing artifact fails before anything is sent), then yield its bytes;
        raise ArtifactIntegrityError at the end if they do not hash to ``sha256``."""
        fh = self.open(key)

        def chunks() -> Iterator[bytes]:
            digest = hashlib.sha256()
            with fh:
                while chunk := fh.read(chunk_size):
                    digest.update(chunk)
                    yield chunk
            if digest.hexdigest() != sha256:
                raise ArtifactIntegrityError(f"artifact {key} does not match its recorded sha256")

        return chunks()

    def read_verified(self, key: str, sha256: str) -> bytes:
        return b"".join(self.iter_verified(key, sha256))

    @staticmethod
    def key_for(kind: str, sha256: str, suffix: str) -> str:
        return f"{kind}/{sha256[:2]}/{sha256}{suffix}"
