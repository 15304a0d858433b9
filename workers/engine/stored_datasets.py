"""The service's stored copy of a dataset: read back, and rewritten without erased rows.

A stored file was validated when it was registered, and every read is checked against its sha256, so
reading it back skips the upload rules: once erasures have removed rows, a file may no longer have
training rows, two classes or any document, and it must still load. A rewrite keeps the format: an
.npz holds the same arrays (same names, dtypes and row order) minus the erased rows, written
deterministically (the same rows give the same bytes, so the same content-addressed key); a JSON
Lines file keeps every other line byte for byte.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from workers.engine.datasets import ArrayDataset, _hash_split
from workers.engine.text import TextDataset

_EPOCH = (1980, 1, 1, 0, 0, 0)  # a fixed member date: np.savez stamps the current time


@dataclass(frozen=True)
class Rewritten:
    data: bytes
    rows_removed: int
    rows_kept: int


def rows_holding(ids: np.ndarray, sample_ids: Collection[str]) -> np.ndarray:
    """Positions in ``ids`` of those of ``sample_ids`` it holds; IDs not there are skipped."""
    if not len(sample_ids) or not len(ids):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.isin(ids, np.asarray(list(sample_ids), dtype=str)))


def _arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def load_npz(data: bytes) -> ArrayDataset:
    a = _arrays(data)
    return ArrayDataset(ids=a["ids"].astype(str), x=a["x"], y=a["y"].astype(np.int64), split=a["split"].astype(str))


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """What np.savez_compressed writes, with a fixed member date (deterministic bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)
    return buf.getvalue()


def npz_without(data: bytes, sample_ids: Collection[str]) -> Rewritten:
    """The stored .npz without the rows of ``sample_ids`` (every array is one row per sample)."""
    arrays = _arrays(data)
    ids = arrays["ids"]
    drop = np.zeros(len(ids), dtype=bool)
    drop[rows_holding(ids.astype(str), sample_ids)] = True
    if not drop.any():
        return Rewritten(data, 0, len(ids))
    kept = {name: array[~drop] for name, array in arrays.items()}
    return Rewritten(npz_bytes(kept), int(drop.sum()), int((~drop).sum()))


def _documents(data: bytes):
    """(raw line, its document or None for a blank line), line by line."""
    for raw in data.split(b"\n"):
        yield raw, (json.loads(raw) if raw.strip() else None)


def load_jsonl(data: bytes) -> TextDataset:
    ids, texts, splits = [], [], []
    for _raw, doc in _documents(data):
        if doc is not None:
            ids.append(doc["id"])
            texts.append(doc["text"])
            splits.append(doc.get("split"))
    hashed = _hash_split(ids).tolist() if ids else []  # a missing split: the same hash as at registration
    split = [s if s is not None else h for s, h in zip(splits, hashed, strict=True)]
    return TextDataset(ids=np.asarray(ids, dtype=str), texts=texts, split=np.asarray(split, dtype=str))


def jsonl_without(data: bytes, sample_ids: Collection[str]) -> Rewritten:
    """The stored JSON Lines file without the lines of the documents ``sample_ids``."""
    erased = set(sample_ids)
    lines, removed, kept = [], 0, 0
    for raw, doc in _documents(data):
        if doc is not None and doc["id"] in erased:
            removed += 1
            continue
        kept += doc is not None
        lines.append(raw)
    return Rewritten(b"\n".join(lines) if removed else data, removed, kept)
