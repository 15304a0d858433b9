"""Artifact store: datasets, checkpoints and update logs behind one small interface.

Keys are content addressed (``<kind>/<sha256[:2]>/<sha256><suffix>``), so a key names its bytes and
every read can be verified. The local-directory implementation is the default; an S3-compatible
one only has to implement :class:`ArtifactStore`.
"""

from app.storage.base import ArtifactIntegrityError, ArtifactMissingError, ArtifactStore, StoredArtifact
from app.storage.local import LocalArtifactStore, get_artifact_store

__all__ = [
    "ArtifactIntegrityError",
    "ArtifactMissingError",
    "ArtifactStore",
    "LocalArtifactStore",
    "StoredArtifact",
    "get_artifact_store",
]
