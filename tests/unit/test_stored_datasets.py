"""Stored dataset files rewritten without erased rows: same format, other rows untouched, deterministic."""

from __future__ import annotations

import io
import json

import numpy as np

from workers.engine.datasets import parse_npz, to_npz_bytes, validate_arrays
from workers.engine.stored_datasets import (
    jsonl_without,
    load_jsonl,
    load_npz,
    npz_without,
    rows_holding,
)
from workers.engine.text import parse_jsonl


def _stored() -> bytes:
    ds = validate_arrays(
        np.array(["a", "b", "c", "d", "e"]),
        np.arange(20, dtype=np.float32).reshape(5, 2, 2),
        np.array([0, 1, 0, 1, 1]),
        np.array(["train", "train", "train", "test", "train"]),
    )
    return to_npz_bytes(ds)


def test_an_npz_loses_exactly_the_erased_rows_and_keeps_its_arrays():
    data = _stored()
    out = npz_without(data, ["b", "e", "not-there"])
    assert (out.rows_removed, out.rows_kept) == (2, 3)
    with np.load(io.BytesIO(out.data), allow_pickle=False) as npz:
        assert sorted(npz.files) == ["ids", "split", "x", "y"]
        before = parse_npz(data)
        assert npz["ids"].tolist() == ["a", "c", "d"]
        assert npz["x"].dtype == before.x.dtype and npz["y"].dtype == before.y.dtype
        assert np.array_equal(npz["x"], before.x[[0, 2, 3]]) and npz["split"].tolist() == ["train", "train", "test"]
    assert npz_without(data, ["b", "e"]).data == out.data  # deterministic: the same content-addressed key
    assert npz_without(data, ["zz"]).data is data  # nothing to remove: the same file


def test_a_rewritten_npz_loads_even_without_what_an_upload_needs():
    only_test_left = npz_without(_stored(), ["a", "b", "c", "e"])
    ds = load_npz(only_test_left.data)
    assert ds.ids.tolist() == ["d"] and ds.rows("train").tolist() == [] and ds.input_shape == (2, 2)
    empty = load_npz(npz_without(_stored(), list("abcde")).data)
    assert len(empty) == 0 and empty.input_shape == (2, 2)


def test_rows_are_found_by_id_in_the_file_read():
    ds = load_npz(npz_without(_stored(), ["a"]).data)
    assert rows_holding(ds.ids, ["c", "a", "zz"]).tolist() == [1]  # "a" left the file; "c" moved up
    assert rows_holding(ds.ids, []).tolist() == []


def test_a_jsonl_loses_the_erased_documents_lines_and_keeps_the_others_byte_for_byte():
    lines = [
        json.dumps({"id": "d1", "text": "first", "split": "train"}),
        json.dumps({"id": "d2", "text": "the secret", "split": "train"}),
        "",
        json.dumps({"id": "d3", "text": "third, no split"}),
        json.dumps({"id": "d4", "text": "held out", "split": "test"}, ensure_ascii=False),
    ]
    data = ("\n".join(lines) + "\n").encode()
    out = jsonl_without(data, ["d2", "nope"])
    assert (out.rows_removed, out.rows_kept) == (1, 3)
    assert b"secret" not in out.data and b"d2" not in out.data
    assert out.data.split(b"\n") == [line.encode() for line in lines[:1] + lines[2:]] + [b""]
    before, after = parse_jsonl(data), load_jsonl(out.data)
    assert after.ids.tolist() == ["d1", "d3", "d4"]
    assert after.split.tolist() == [before.split[i] for i in (0, 2, 3)]  # a missing split: the same hash
    assert jsonl_without(data, []).data is data
    assert len(load_jsonl(jsonl_without(data, ["d1", "d2", "d3", "d4"]).data)) == 0
