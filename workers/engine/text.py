"""Text for language models: tokenizers, JSON Lines text datasets, and packing into ID-labelled blocks.

Dataset format (upload or server path): UTF-8 JSON Lines, one document per line::

    {"id": "doc-1", "text": "Some text.", "split": "train"}

``id`` follows the same rules as the .npz datasets' sample IDs (workers.engine.datasets); ``split``
is optional (``train``/``test``/``val``); without it the same stable hash of the ID decides.

Packing tokenizes each document, appends ``<eos>`` and cuts the tokens into blocks of
``context_length``: a block never holds tokens of two documents, so forgetting a document means
dropping exactly the blocks labelled with its ID. A document's last block is padded and masked.

Tokenizers: ``ByteTokenizer`` (UTF-8 bytes + ``<eos>``, needs no files) and ``BpeTokenizer``
(GPT-2 byte-level BPE from a ``vocab.json`` and a ``merges.txt`` given by path; transformers is
imported only then).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from workers.engine.datasets import (
    MAX_ID_LENGTH,
    SPLITS,
    DatasetFormatError,
    _check_ids,
    _hash_split,
)
from workers.engine.holdout import Role, held_out_rows

if TYPE_CHECKING:
    import torch

    from workers.engine.tensors import LabelledTensors

MAX_JSONL_BYTES = 1024**3
MAX_DOCUMENTS = 1_000_000
MAX_TEXT_CHARS = 1_000_000  # one document
IGNORE_INDEX = -100  # label of padded positions: the loss skips them (torch / transformers convention)


@runtime_checkable
class Tokenizer(Protocol):
    vocab_size: int
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes are tokens 0-255; ``<eos>`` is 256 (also used to pad). Needs no files."""

    SPECIAL_TOKENS = ("<eos>",)

    def __init__(self):
        self.eos_id = 256
        self.pad_id = self.eos_id
        self.vocab_size = 256 + len(self.SPECIAL_TOKENS)

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int]) -> str:
        """Special tokens are dropped; a byte sequence cut inside a character decodes to U+FFFD."""
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return "ByteTokenizer()"


class BpeTokenizer:
    """GPT-2 byte-level BPE from ``vocab.json`` + ``merges.txt`` paths (no hub download).

    ``<|endoftext|>`` is the end-of-document (and padding) token; it is added if the vocab lacks it."""

    EOS = "<|endoftext|>"

    def __init__(self, vocab_path: str | Path, merges_path: str | Path):
        for p in (vocab_path, merges_path):
            if not Path(p).is_file():
                raise FileNotFoundError(f"tokenizer file not found: {p}")
        try:
            from transformers import GPT2TokenizerFast as _Tok
        except ImportError:  # without the tokenizers package
            from transformers import GPT2Tokenizer as _Tok
        self._tok = _Tok(vocab_file=str(vocab_path), merges_file=str(merges_path))
        if self.EOS not in self._tok.get_vocab():
            self._tok.add_special_tokens({"eos_token": self.EOS})
        self._tok.eos_token = self.EOS
        self.eos_id = int(self._tok.convert_tokens_to_ids(self.EOS))
        self.pad_id = self.eos_id
        self.vocab_size = len(self._tok)

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=True)

    def __repr__(self) -> str:
        return f"BpeTokenizer(vocab_size={self.vocab_size})"


def make_tokenizer(vocab_path: str | Path | None = None, merges_path: str | Path | None = None) -> Tokenizer:
    """Byte-level by default; GPT-2 BPE when both files are given."""
    if vocab_path is None and merges_path is None:
        return ByteTokenizer()
    if vocab_path is None or merges_path is None:
        raise ValueError("a BPE tokenizer needs both vocab_path and merges_path")
    return BpeTokenizer(vocab_path, merges_path)


@dataclass(frozen=True)
class TextDataset:
    ids: np.ndarray  # str, unique, in file order
    texts: list[str]
    split: np.ndarray  # str: train / test / val

    def __len__(self) -> int:
        return len(self.ids)

    def split_counts(self) -> dict[str, int]:
        names, counts = np.unique(self.split, return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts, strict=True)}

    def unknown_ids(self, ids: Iterable[str]) -> list[str]:
        known = set(self.ids.tolist())
        return [s for s in ids if s not in known]


def _id_problem(sid: object) -> str | None:
    if not isinstance(sid, str):
        return f"id must be a string, not {type(sid).__name__}"
    if not sid:
        return "id must not be empty"
    if len(sid) > MAX_ID_LENGTH:
        return f"id must be at most {MAX_ID_LENGTH} characters"
    if not sid.isprintable():
        return "id must not contain control characters"
    return None


def parse_jsonl(
    data: bytes,
    *,
    max_bytes: int = MAX_JSONL_BYTES,
    max_documents: int = MAX_DOCUMENTS,
    max_text_chars: int = MAX_TEXT_CHARS,
) -> TextDataset:
    """Parse and validate a JSON Lines text dataset; DatasetFormatError names the line at fault."""
    if len(data) > max_bytes:
        raise DatasetFormatError(f"the file is larger than {max_bytes} bytes")
    ids: list[str] = []
    texts: list[str] = []
    splits: list[str | None] = []
    first_line: dict[str, int] = {}
    duplicates: dict[str, list[int]] = {}
    for n, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetFormatError(f"line {n}: not UTF-8") from None
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetFormatError(f"line {n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:  # json's C parser recurses once per [ or {: a few KB can exhaust it
            raise DatasetFormatError(f"line {n}: the JSON is nested too deeply") from None
        if not isinstance(doc, dict):
            raise DatasetFormatError(f"line {n}: expected an object with id and text, got {type(doc).__name__}")
        missing = [k for k in ("id", "text") if k not in doc]
        extra = sorted(set(doc) - {"id", "text", "split"})
        if missing or extra:
            raise DatasetFormatError(
                f"line {n}: an object needs id and text (split is optional); missing {missing}, unexpected {extra}"
            )
        sid, text, split = doc["id"], doc["text"], doc.get("split")
        problem = _id_problem(sid)
        if problem:
            raise DatasetFormatError(f"line {n}: {problem}")
        if not isinstance(text, str) or not text:
            raise DatasetFormatError(f"line {n}: text must be a non-empty string")
        if len(text) > max_text_chars:
            raise DatasetFormatError(f"line {n}: text is longer than {max_text_chars} characters")
        if split is not None and split not in SPLITS:
            raise DatasetFormatError(f"line {n}: split must be one of {', '.join(SPLITS)}, not {split!r}")
        if sid in first_line:
            duplicates.setdefault(sid, [first_line[sid]]).append(n)
            continue
        first_line[sid] = n
        if len(ids) >= max_documents:
            raise DatasetFormatError(f"line {n}: more than {max_documents} documents")
        ids.append(sid)
        texts.append(text)
        splits.append(split)
    if duplicates:
        shown = "; ".join(f"{s!r} on lines {', '.join(map(str, lines))}" for s, lines in list(duplicates.items())[:5])
        raise DatasetFormatError(
            f"document IDs must be unique; {len(duplicates)} appear more than once: {shown}",
            duplicates=list(duplicates)[:100],
            duplicate_count=len(duplicates),
        )
    if not ids:
        raise DatasetFormatError("the file holds no documents")
    id_array = _check_ids(np.asarray(ids, dtype=str))
    hashed = _hash_split(ids)
    split_array = np.asarray([s if s is not None else h for s, h in zip(splits, hashed.tolist(), strict=True)])
    if not (split_array == "train").any():
        raise DatasetFormatError("the dataset has no training documents")
    return TextDataset(ids=id_array, texts=texts, split=split_array.astype(str))


def load_jsonl(path: str | Path, **caps) -> TextDataset:
    """A JSON Lines dataset from a server path (size checked before it is read)."""
    path = Path(path)
    max_bytes = caps.get("max_bytes", MAX_JSONL_BYTES)
    if path.stat().st_size > max_bytes:
        raise DatasetFormatError(f"the file is larger than {max_bytes} bytes")
    return parse_jsonl(path.read_bytes(), **caps)


def to_jsonl_bytes(ds: TextDataset) -> bytes:
    lines = (
        json.dumps({"id": i, "text": t, "split": s}, ensure_ascii=False)
        for i, t, s in zip(ds.ids.tolist(), ds.texts, ds.split.tolist(), strict=True)
    )
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass(frozen=True)
class PackedBlocks:
    """Fixed-length token blocks, each from exactly one document.

    ``tokens`` (n_blocks, context_length) int64, ``mask`` (same shape) bool: True on real tokens,
    False on padding. ``doc_ids`` / ``split``: per block, the document's ID and split."""

    tokens: np.ndarray
    mask: np.ndarray
    doc_ids: np.ndarray
    split: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def labels(self) -> np.ndarray:
        """Next-token targets for GPT2LMHeadModel(labels=...): the tokens, IGNORE_INDEX on padding."""
        return np.where(self.mask, self.tokens, IGNORE_INDEX)

    def rows(self, split: str | None = None, *, exclude_ids: Iterable[str] = ()) -> np.ndarray:
        """Block indices in ``split`` (all if None), minus the blocks of the documents ``exclude_ids``."""
        keep = np.ones(len(self), dtype=bool) if split is None else self.split == split
        exclude = list(exclude_ids)
        if exclude:
            keep &= ~np.isin(self.doc_ids, exclude)
        return np.flatnonzero(keep)

    def held_out(self, role: Role) -> np.ndarray:
        """Block indices of held-out documents (test and val) with this role (workers.engine.holdout)."""
        return held_out_rows(self.split, self.doc_ids, role)

    def rows_of(self, ids: Iterable[str]) -> np.ndarray:
        """Block indices of these documents."""
        return np.flatnonzero(np.isin(self.doc_ids, list(ids)))


def pack_documents(
    ids: Sequence[str] | np.ndarray,
    texts: Sequence[str],
    tokenizer: Tokenizer,
    context_length: int,
    split: Sequence[str] | np.ndarray | None = None,
) -> PackedBlocks:
    """Tokenize each document (+ eos) and cut it into blocks of ``context_length`` tokens."""
    if context_length < 2:
        raise ValueError("context_length must be at least 2")
    ids = [str(s) for s in ids]
    if len(ids) != len(texts):
        raise ValueError(f"{len(ids)} ids but {len(texts)} texts")
    splits = ["train"] * len(ids) if split is None else [str(s) for s in split]
    blocks, masks, block_ids, block_splits = [], [], [], []
    for sid, text, sp in zip(ids, texts, splits, strict=True):
        tokens = [*tokenizer.encode(text), tokenizer.eos_id]
        for start in range(0, len(tokens), context_length):
            chunk = tokens[start : start + context_length]
            pad = context_length - len(chunk)
            blocks.append(chunk + [tokenizer.pad_id] * pad)
            masks.append([True] * len(chunk) + [False] * pad)
            block_ids.append(sid)
            block_splits.append(sp)
    return PackedBlocks(
        tokens=np.asarray(blocks, dtype=np.int64).reshape(-1, context_length),
        mask=np.asarray(masks, dtype=bool).reshape(-1, context_length),
        doc_ids=np.asarray(block_ids, dtype=str),
        split=np.asarray(block_splits, dtype=str),
    )


def pack_dataset(ds: TextDataset, tokenizer: Tokenizer, context_length: int) -> PackedBlocks:
    return pack_documents(ds.ids, ds.texts, tokenizer, context_length, ds.split)


def lm_tensors(
    blocks: PackedBlocks, rows: np.ndarray, device: torch.device | str = "cpu", with_ids: bool = False
) -> LabelledTensors:
    """Blocks ``rows`` as training / evaluation tensors for a causal LM (workers.engine.objectives):
    ``x`` the token IDs (int64, ``[n, context_length]``: not floats, the model embeds them), ``y`` the
    labels (the tokens, ``IGNORE_INDEX`` on padding) and, with ``with_ids``, ``ids`` each block's
    document ID (what per-document batching, the update log and forgetting go by)."""
    import torch  # here: the API parses text datasets with this module, without torch

    from workers.engine.tensors import LabelledTensors

    rows = np.asarray(rows, dtype=np.int64)
    x = torch.from_numpy(np.ascontiguousarray(blocks.tokens[rows])).long()
    y = torch.from_numpy(np.ascontiguousarray(blocks.labels[rows])).long()
    ids = blocks.doc_ids[rows].tolist() if with_ids else None
    return LabelledTensors(x, y, ids).placed(device)  # resident, or streamed when over the device's budget


__all__ = [
    "IGNORE_INDEX",
    "BpeTokenizer",
    "ByteTokenizer",
    "DatasetFormatError",
    "PackedBlocks",
    "TextDataset",
    "Tokenizer",
    "lm_tensors",
    "load_jsonl",
    "make_tokenizer",
    "pack_dataset",
    "pack_documents",
    "parse_jsonl",
    "to_jsonl_bytes",
]
