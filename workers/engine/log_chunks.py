"""Update-log chunk files as files: which steps one holds, and the same chunk without some steps.

A chunk is a safetensors file whose tensors are keyed by the recording step: ``"{step}"`` (a dense
delta), ``"{step}/values"`` with ``"{step}/index"`` or ``"{step}/mask"`` (a pruned one), or
``"{step}/{parameter}"`` (a first-epoch gradient); see :mod:`workers.engine.update_log`. Purging a
step (its batch held an erased sample, or amnesiac unlearning already subtracted it) rewrites the
chunk without that step's tensors; the readers look steps up by key, so a chunk missing some steps
reads exactly as before for the others.

Plain bytes, no torch: the service's housekeeping (the reconciler) rewrites chunks without loading
it. A rewrite copies the kept tensors' bytes as they are and writes the header with sorted keys, so
the same chunk minus the same steps is always the same file (the same content-addressed key).
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable
from typing import BinaryIO

METADATA = "__metadata__"
_MAX_HEADER = 100 * 1024 * 1024  # what safetensors itself accepts
# bytes per element: tensors are laid out widest first, as safetensors does, so each stays aligned
_WIDTH = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2, "U16": 2}


def step_of(key: str) -> int:
    """The recording step a tensor key belongs to."""
    return int(key.split("/", 1)[0])


def read_header(stream: BinaryIO) -> dict:
    """The safetensors header (tensor names, dtypes, offsets, metadata) without reading the data."""
    prefix = stream.read(8)
    if len(prefix) != 8:
        raise ValueError("not a safetensors file: shorter than its header length")
    (size,) = struct.unpack("<Q", prefix)
    if size > _MAX_HEADER:
        raise ValueError(f"not a safetensors file: header of {size} bytes")
    raw = stream.read(size)
    if len(raw) != size:
        raise ValueError("not a safetensors file: truncated header")
    return json.loads(raw)


def steps_in_header(header: dict) -> set[int]:
    return {step_of(key) for key in header if key != METADATA}


def stored_steps(stream: BinaryIO) -> set[int]:
    """The steps a chunk file holds tensors of, from its header alone."""
    return steps_in_header(read_header(stream))


def without_steps(data: bytes, steps: Iterable[int]) -> bytes | None:
    """The chunk ``data`` minus every tensor of ``steps``, metadata kept; None if no tensor is left.
    Deterministic: the same input gives the same bytes."""
    drop = set(steps)
    header = read_header(io.BytesIO(data))
    body = memoryview(data)[8 + struct.unpack("<Q", data[:8])[0] :]
    kept = sorted(
        (key for key in header if key != METADATA and step_of(key) not in drop),
        key=lambda k: (-_WIDTH.get(header[k]["dtype"], 1), k),
    )
    if not kept:
        return None
    out: dict = {METADATA: header[METADATA]} if METADATA in header else {}
    parts, offset = [], 0
    for key in kept:
        begin, end = header[key]["data_offsets"]
        parts.append(body[begin:end])
        out[key] = {
            "dtype": header[key]["dtype"],
            "shape": header[key]["shape"],
            "data_offsets": [offset, offset + end - begin],
        }
        offset += end - begin
    raw = json.dumps(out, sort_keys=True, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw + b"".join(parts)
