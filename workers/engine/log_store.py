"""A directory as chunk sink and source, with the manifest as JSON: update logs without the service."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from workers.engine.update_log import ChunkRef, RecorderConfig, StepEntry, UpdateLogManifest


class DirectoryLogStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def write_chunk(self, index: int, kind: str, data: bytes) -> ChunkRef:
        name = f"{kind}-{index:06d}.safetensors"
        (self.root / name).write_bytes(data)
        return ChunkRef(index=index, key=name, sha256=hashlib.sha256(data).hexdigest(), size=len(data), kind=kind)

    def read_chunk(self, ref: ChunkRef) -> bytes:
        data = (self.root / ref.key).read_bytes()
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ValueError(f"update-log chunk {ref.key} does not match its sha256")
        return data

    def save_manifest(self, manifest: UpdateLogManifest) -> None:
        body = {
            "config": manifest.config.model_dump(),
            "param_shapes": manifest.param_shapes,
            "dense_bytes": manifest.dense_bytes,
            "entries": [dataclasses.asdict(e) for e in manifest.entries],
            "chunks": [dataclasses.asdict(c) for c in manifest.chunks],
        }
        (self.root / "manifest.json").write_text(json.dumps(body))

    def load_manifest(self) -> UpdateLogManifest:
        body = json.loads((self.root / "manifest.json").read_text())
        return UpdateLogManifest(
            config=RecorderConfig.model_validate(body["config"]),
            param_shapes=body["param_shapes"],
            entries=[StepEntry(**e) for e in body["entries"]],
            chunks=[ChunkRef(**c) for c in body["chunks"]],
            dense_bytes=body["dense_bytes"],
        )
