"""Datasets as arrays: rows addressable by sample ID, class -> sample IDs, splits, tombstones.

The .npz format (also what the service stores): ``ids`` (unique strings), ``x`` (numbers, one row per
sample), ``y`` (integer class labels >= 0) and optionally ``split`` (``train``/``test``/``val``, or
0/1/2). Without ``split`` a stable 80/20 train/test split is derived from a hash of each ID.
Loading never unpickles: object arrays are refused.
"""

from __future__ import annotations

import hashlib
import io
import math
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from workers.engine.holdout import Role, held_out_rows

SPLITS = ("train", "test", "val")
MAX_ID_LENGTH = 200
MAX_LABEL = 9_999
MAX_UNCOMPRESSED_BYTES = 4 * 1024**3  # all arrays of one .npz together, as loaded in memory
MAX_ROWS = 1_000_000  # samples of one dataset (workers.engine.text.MAX_DOCUMENTS for documents)


class DatasetFormatError(ValueError):
    """The file is not a dataset of the documented shape. ``duplicates`` is set for repeated IDs."""

    def __init__(self, message: str, duplicates: list[str] | None = None, duplicate_count: int = 0):
        super().__init__(message)
        self.duplicates = duplicates or []
        self.duplicate_count = duplicate_count


@dataclass(frozen=True)
class ArrayDataset:
    ids: np.ndarray  # str, unique
    x: np.ndarray
    y: np.ndarray  # int64
    split: np.ndarray  # str: train / test / val

    def __post_init__(self):
        object.__setattr__(self, "_index", {sid: i for i, sid in enumerate(self.ids.tolist())})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    @property
    def classes(self) -> list[int]:
        return sorted(int(c) for c in np.unique(self.y))

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def split_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.split, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    def unknown_ids(self, ids: Iterable[str]) -> list[str]:
        return [s for s in ids if s not in self._index]

    def indices_of(self, ids: Iterable[str]) -> np.ndarray:
        """Row indices of these sample IDs; KeyError names the first unknown one."""
        return np.fromiter((self._index[s] for s in ids), dtype=np.int64)

    def rows(
        self, split: str | None = None, *, labels: Iterable[int] | None = None, exclude: np.ndarray | None = None
    ) -> np.ndarray:
        """Row indices in ``split`` (all splits if None), optionally only these labels, minus ``exclude``."""
        mask = np.ones(len(self), dtype=bool) if split is None else self.split == split
        if labels is not None:
            mask &= np.isin(self.y, np.fromiter(labels, dtype=np.int64))
        if exclude is not None and len(exclude):
            mask[exclude] = False
        return np.flatnonzero(mask)

    def held_out(self, role: Role, *, labels: Iterable[int] | None = None) -> np.ndarray:
        """Row indices of the held-out rows (test and val) with this role (workers.engine.holdout),
        optionally only these labels."""
        rows = held_out_rows(self.split, self.ids, role)
        if labels is not None:
            rows = rows[np.isin(self.y[rows], np.fromiter(labels, dtype=np.int64))]
        return rows

    def ids_of_class(self, label: int, split: str = "train") -> list[str]:
        return self.ids[self.rows(split, labels=[label])].tolist()


def _hash_split(ids: Sequence[str], test_fraction: float = 0.2) -> np.ndarray:
    """Stable split from the ID alone: the same sample lands in the same split on every upload."""
    cut = int(test_fraction * 2**32)
    out = np.empty(len(ids), dtype=object)
    for i, sid in enumerate(ids):
        h = int.from_bytes(hashlib.sha256(sid.encode()).digest()[:4], "big")
        out[i] = "test" if h < cut else "train"
    return out.astype(str)


def _as_strings(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype.kind == "S":
        try:
            return np.char.decode(arr, "utf-8")
        except UnicodeDecodeError:
            raise DatasetFormatError(f"{name} holds bytes that are not UTF-8") from None
    if arr.dtype.kind != "U":
        raise DatasetFormatError(f"{name} must be an array of strings, not dtype {arr.dtype}")
    return arr


def _check_ids(ids: np.ndarray) -> np.ndarray:
    if ids.ndim != 1 or len(ids) == 0:
        raise DatasetFormatError("ids must be a non-empty 1-D array")
    ids = _as_strings(ids, "ids")
    lengths = np.char.str_len(ids)
    if (lengths == 0).any():
        raise DatasetFormatError("ids must not contain empty strings")
    if (lengths > MAX_ID_LENGTH).any():
        raise DatasetFormatError(f"ids must be at most {MAX_ID_LENGTH} characters")
    if any(not s.isprintable() for s in ids.tolist()):
        raise DatasetFormatError("ids must not contain control characters")
    uniq, counts = np.unique(ids, return_counts=True)
    dup = uniq[counts > 1]
    if len(dup):
        raise DatasetFormatError(
            f"sample IDs must be unique; {len(dup)} appear more than once",
            duplicates=dup[:100].tolist(),
            duplicate_count=len(dup),
        )
    return ids


def _check_split(split: np.ndarray | None, ids: np.ndarray) -> np.ndarray:
    if split is None:
        return _hash_split(ids.tolist())
    if split.shape != ids.shape:
        raise DatasetFormatError(f"split has shape {split.shape}, ids has {ids.shape}")
    if split.dtype.kind in "iu":
        if split.min() < 0 or split.max() >= len(SPLITS):
            raise DatasetFormatError("integer split values must be 0 (train), 1 (test) or 2 (val)")
        return np.asarray(SPLITS)[split]
    split = _as_strings(split, "split")
    bad = sorted(set(np.unique(split).tolist()) - set(SPLITS))
    if bad:
        raise DatasetFormatError(f"split values must be train, test or val; found {bad[:10]}")
    return split


def validate_arrays(ids, x, y, split=None) -> ArrayDataset:
    ids = _check_ids(np.asarray(ids))
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype.kind not in "biuf" or x.ndim < 2 or len(x) != len(ids) or 0 in x.shape:
        raise DatasetFormatError(
            f"x must be numeric with one row per id (got dtype {x.dtype}, shape {x.shape}, {len(ids)} ids)"
        )
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        raise DatasetFormatError("x contains NaN or infinite values")
    if y.dtype.kind not in "iu" or y.shape != ids.shape:
        raise DatasetFormatError(f"y must be integer labels, one per id (got dtype {y.dtype}, shape {y.shape})")
    if y.min() < 0 or y.max() > MAX_LABEL:
        raise DatasetFormatError(f"labels must be between 0 and {MAX_LABEL}")
    split = _check_split(None if split is None else np.asarray(split), ids)
    if not (split == "train").any():
        raise DatasetFormatError("the dataset has no training rows")
    if len(np.unique(y[split == "train"])) < 2:
        raise DatasetFormatError("the training rows must hold at least two classes")
    return ArrayDataset(ids=ids, x=x, y=y.astype(np.int64), split=split)


# What a broken archive raises while it is read: a bad CRC, a bad deflate stream, an encrypted or
# unsupported member, a truncated array.
_UNREADABLE = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError)


def _check_declared_sizes(data: bytes, max_bytes: int, max_rows: int) -> None:
    """Before anything is decompressed: every member's zip header (file_size) and .npy header (shape,
    dtype) must agree, the rows stay under ``max_rows`` and all members together under ``max_bytes``.
    numpy allocates what a header declares before it reads, and a 1 MB zip of zeros can hold
    gigabytes; zipfile then never returns more than file_size and checks the CRC of what it returns."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        total = 0
        for info in zf.infolist():
            total += info.file_size
            if total > max_bytes:
                raise DatasetFormatError(
                    f"the arrays hold more than {max_bytes} bytes uncompressed (the limit; "
                    f"{info.filename} alone declares {info.file_size})"
                )
            if not info.filename.endswith(".npy"):
                continue
            with zf.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise DatasetFormatError(f"{info.filename} is .npy format {version}; only 1.0 and 2.0 are read")
                read_header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(f)
                declared = math.prod(shape) * dtype.itemsize
                if not dtype.hasobject and declared != info.file_size - f.tell():  # object arrays: refused below
                    raise DatasetFormatError(
                        f"{info.filename} declares shape {shape} of {dtype} ({declared} bytes) but holds "
                        f"{info.file_size - f.tell()} bytes"
                    )
                if shape and shape[0] > max_rows:
                    raise DatasetFormatError(f"{info.filename} has {shape[0]} rows; at most {max_rows} are allowed")


def parse_npz(data: bytes, max_bytes: int = MAX_UNCOMPRESSED_BYTES, max_rows: int = MAX_ROWS) -> ArrayDataset:
    """Parse and validate an uploaded .npz; DatasetFormatError says what is wrong."""
    try:
        if zipfile.is_zipfile(io.BytesIO(data)):
            _check_declared_sizes(data, max_bytes, max_rows)
        npz = np.load(io.BytesIO(data), allow_pickle=False)
    except DatasetFormatError:
        raise
    except _UNREADABLE as exc:
        raise DatasetFormatError(f"not a readable .npz file: {exc}") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DatasetFormatError("expected an .npz archive (np.savez), got a single .npy array")
    with npz:
        names = set(npz.files)
        missing = sorted({"ids", "x", "y"} - names)
        extra = sorted(names - {"ids", "x", "y", "split"})
        if missing or extra:
            raise DatasetFormatError(
                f"the archive must hold arrays ids, x, y and optionally split; missing {missing}, unexpected {extra}"
            )
        try:
            arrays = {k: npz[k] for k in names}
        except ValueError as exc:
            if "pickle" not in str(exc):
                raise DatasetFormatError(f"not a readable .npz file: {exc}") from None
            # object arrays need pickle, which we never load
            raise DatasetFormatError(
                f"cannot read an array without unpickling it ({exc}); store strings as dtype U"
            ) from None
        except _UNREADABLE as exc:
            raise DatasetFormatError(f"not a readable .npz file: {exc}") from None
    return validate_arrays(arrays["ids"], arrays["x"], arrays["y"], arrays.get("split"))


def to_npz_bytes(ds: ArrayDataset) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, ids=ds.ids, x=ds.x, y=ds.y, split=ds.split)
    return buf.getvalue()
