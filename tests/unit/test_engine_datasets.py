from __future__ import annotations

import io

import numpy as np
import pytest

from workers.engine.datasets import DatasetFormatError, parse_npz, to_npz_bytes, validate_arrays


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_rows_by_id_class_split_and_tombstones():
    ds = validate_arrays(
        np.array(["a", "b", "c", "d", "e"]),
        np.arange(10.0).reshape(5, 2),
        np.array([0, 1, 0, 1, 2]),
        np.array(["train", "train", "train", "test", "train"]),
    )
    assert ds.indices_of(["c", "a"]).tolist() == [2, 0]
    assert ds.unknown_ids(["a", "zz"]) == ["zz"]
    assert ds.ids_of_class(0) == ["a", "c"]
    assert ds.rows("train").tolist() == [0, 1, 2, 4]
    assert ds.rows("train", exclude=np.array([1, 2])).tolist() == [0, 4]
    assert ds.rows("train", labels=[0, 2], exclude=np.array([0])).tolist() == [2, 4]
    assert ds.split_counts() == {"test": 1, "train": 4} and ds.classes == [0, 1, 2] and ds.num_classes == 3


def test_round_trip_and_bytes_ids():
    ds = validate_arrays(
        np.array([b"x1", b"x2", b"x3"]), np.zeros((3, 4), np.uint8), np.array([0, 1, 1]), np.array([0, 0, 1])
    )
    back = parse_npz(to_npz_bytes(ds))
    assert back.ids.tolist() == ["x1", "x2", "x3"] and back.split.tolist() == ["train", "train", "test"]
    assert back.x.dtype == np.uint8


def test_pickled_arrays_are_never_loaded():
    data = _npz(ids=np.array(["a", "b"], dtype=object), x=np.zeros((2, 2)), y=np.array([0, 1]))
    with pytest.raises(DatasetFormatError, match="without unpickling"):
        parse_npz(data)


def test_duplicates_are_reported():
    with pytest.raises(DatasetFormatError) as info:
        validate_arrays(np.array(["a", "a", "b", "b", "c"]), np.zeros((5, 1)), np.array([0, 1, 0, 1, 0]))
    assert info.value.duplicates == ["a", "b"] and info.value.duplicate_count == 2


def test_control_characters_in_ids_are_refused():
    with pytest.raises(DatasetFormatError, match="control"):
        validate_arrays(np.array(["a\n", "b"]), np.zeros((2, 1)), np.array([0, 1]), np.array(["train", "train"]))
