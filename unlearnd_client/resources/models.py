from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from unlearnd_client.errors import ApiError, ChecksumMismatch
from unlearnd_client.schemas import Download, Model, Version
from unlearnd_client.transport import Transport

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?([0-9a-fA-F]{4}-?){3}[0-9a-fA-F]{12}$")
CHUNK = 1 << 20


class Models:
    def __init__(self, transport: Transport):
        self._t = transport

    def register(self, spec: dict[str, Any]) -> Model:
        """The service trains it on a worker (202); follow ``training_job_id`` with ``client.jobs``."""
        return Model.model_validate(self._t.json("POST", "/v1/models", json=spec))

    def upload(self, spec: dict[str, Any], weights: str | Path | bytes | BinaryIO) -> Model:
        """Version 1 from your own safetensors weights, validated against the architecture."""
        if isinstance(weights, (str, Path)):
            with Path(weights).open("rb") as handle:
                return self.upload(spec, handle)
        files = {"weights": ("weights.safetensors", weights)}
        answer = self._t.json("POST", "/v1/models/upload", data={"spec": json.dumps(spec)}, files=files)
        return Model.model_validate(answer)

    def list(self, name: str | None = None, page_size: int = 100) -> Iterator[Model]:
        items = self._t.pages("/v1/models", {"name": name}, page_size=page_size)
        return (Model.model_validate(m) for m in items)

    def get(self, model_id: str) -> Model:
        return Model.model_validate(self._t.json("GET", f"/v1/models/{model_id}"))

    def resolve(self, id_or_name: str) -> Model:
        """A model by its id or, when the text is not a UUID, by its name (names are unique per tenant)."""
        if _UUID.match(id_or_name):
            return self.get(id_or_name)
        found = next(self.list(name=id_or_name, page_size=1), None)
        if found is None:
            raise ApiError(404, "/problems/not-found", "model not found", f"No model named {id_or_name!r}.")
        return found

    def versions(self, model_id: str, page_size: int = 100) -> Iterator[Version]:
        items = self._t.pages(f"/v1/models/{model_id}/versions", page_size=page_size)
        return (Version.model_validate(v) for v in items)

    def version(self, model_id: str, version: int) -> Version:
        return Version.model_validate(self._t.json("GET", f"/v1/models/{model_id}/versions/{version}"))

    def download(self, model_id: str, path: str | Path, version: int | None = None) -> Download:
        """Stream a checkpoint to ``path`` (the head version by default) and check its sha256 against
        what the API reports for that version. It is written beside ``path`` as ``<name>.part`` and
        renamed only once it matches: on a mismatch or an interrupted transfer no file is left."""
        if version is None:
            version = self.get(model_id).head_version
            if version is None:
                raise ApiError(409, "/problems/model-not-ready", "Model not ready", f"Model {model_id} has no version.")
        expected = self.version(model_id, version).sha256
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        digest, size = hashlib.sha256(), 0
        try:
            with self._t.stream("GET", f"/v1/models/{model_id}/versions/{version}/checkpoint") as response:
                announced = response.headers.get("X-Checkpoint-SHA256")
                with partial.open("wb") as out:
                    for chunk in self._t.chunks(response, CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            actual = digest.hexdigest()
            if actual != expected:
                raise ChecksumMismatch(expected, actual)
            if announced is not None and announced != expected:  # the header and the version row disagree
                raise ChecksumMismatch(expected, announced)
            os.replace(partial, target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Download(model_id=model_id, version=version, path=str(target), sha256=actual, size_bytes=size)
