from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from unlearnd_client.schemas import Dataset
from unlearnd_client.transport import Transport


class Datasets:
    def __init__(self, transport: Transport):
        self._t = transport

    def add(
        self,
        name: str | None = None,
        *,
        file: str | Path | None = None,
        builtin: str | None = None,
        server_path: str | None = None,
    ) -> Dataset:
        """Register one of: an uploaded .npz/.jsonl ``file``, a ``builtin`` dataset (``digits``), or a
        ``server_path`` already on the server. Not retried after the upload may have arrived (no
        Idempotency-Key on this endpoint): a lost answer could otherwise register it twice."""
        if sum(x is not None for x in (file, builtin, server_path)) != 1:
            raise ValueError("give exactly one of file, builtin or server_path")
        form = {k: v for k, v in (("name", name), ("builtin", builtin), ("server_path", server_path)) if v}
        if file is None:
            return Dataset.model_validate(self._t.json("POST", "/v1/datasets", data=form))
        path = Path(file)
        with path.open("rb") as handle:
            answer = self._t.json("POST", "/v1/datasets", data=form, files={"file": (path.name, handle)})
        return Dataset.model_validate(answer)

    def list(self, page_size: int = 100) -> Iterator[Dataset]:
        return (Dataset.model_validate(d) for d in self._t.pages("/v1/datasets", page_size=page_size))

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(self._t.json("GET", f"/v1/datasets/{dataset_id}"))
