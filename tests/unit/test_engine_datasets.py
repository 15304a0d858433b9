from __future__ import annotations

import io
import struct
import zipfile

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


def _four_rows(**override) -> dict:
    arrays = {"ids": np.array(["a", "b", "c", "d"]), "x": np.zeros((4, 2), np.float32), "y": np.array([0, 1, 0, 1])}
    return {**arrays, **override}


def test_broken_archives_are_format_errors():
    buf = io.BytesIO()
    np.savez_compressed(buf, **_four_rows(x=np.random.default_rng(0).random((4, 512))))
    data = buf.getvalue()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("x.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)  # the member's deflate stream
    broken = 0
    for offset in range(20, info.compress_size, 97):
        corrupt = bytearray(data)
        corrupt[start + offset] ^= 0xFF
        try:
            parse_npz(bytes(corrupt))
        except DatasetFormatError:  # a bad CRC, a bad deflate stream: never anything else
            broken += 1
    assert broken
    with pytest.raises(DatasetFormatError, match="not a readable"):
        parse_npz(data[: len(data) // 2])


def test_array_headers_must_declare_what_their_member_holds():
    """numpy allocates the shape a header declares before reading: a lying header would ask for 800 GB."""
    with zipfile.ZipFile(io.BytesIO(_npz(**_four_rows()))) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999, 2), }"
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    members["x.npy"] = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + b"\0" * 32
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, member in members.items():
            zf.writestr(name, member)
    with pytest.raises(DatasetFormatError, match=r"declares shape \(99999999999, 2\)"):
        parse_npz(buf.getvalue())


def test_uncompressed_size_is_capped():
    buf = io.BytesIO()
    np.savez_compressed(buf, **_four_rows(x=np.zeros((4, 100_000), np.float32)))  # 1.6 MB of zeros, a few KB zipped
    assert len(buf.getvalue()) < 50_000
    with pytest.raises(DatasetFormatError, match="more than 1000000 bytes uncompressed"):
        parse_npz(buf.getvalue(), max_bytes=1_000_000)
    assert parse_npz(buf.getvalue()).x.shape == (4, 100_000)


def test_rows_need_at_least_one_value():
    with pytest.raises(DatasetFormatError, match="x must be numeric"):
        parse_npz(_npz(**_four_rows(x=np.zeros((4, 0)))))
