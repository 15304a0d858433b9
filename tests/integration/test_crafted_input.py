"""Crafted input against the real API and Postgres: server paths that break resolve/stat, JSON Lines
nested too deeply, .npz decompression bombs and lying zip headers, and tenants' server-path roots.
Each is a 4xx problem that says what was wrong, and stores nothing."""

from __future__ import annotations

import io
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import _process_env
from tests.helpers import assert_problem, bearer, new_api_key
from tests.processes import Process, start_api
from tests.services import free_port

pytestmark = pytest.mark.integration

DOCS = b"".join(b'{"id": "d%d", "text": "document number %d"}\n' % (i, i) for i in range(20))


class Stack:
    def __init__(self, api: Process, url: str, base: Path, ids: dict[str, str], keys: dict[str, str]):
        self.api, self.url, self.base, self.ids, self.keys = api, url, base, ids, keys

    def client(self, label: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, headers=bearer(self.keys[label]))

    def home(self, label: str) -> Path:
        """The tenant's directory under the root: ``<root>/<tenant id>``."""
        return self.base / self.ids[label]


@pytest.fixture(scope="module")
def stack(stack_env, tmp_path_factory) -> Iterator[Stack]:
    """An API whose dataset root holds one directory per tenant; two tenants with admin keys."""
    base = tmp_path_factory.mktemp("roots")
    ids = {label: f"crafted-{label}-{uuid.uuid4().hex[:6]}" for label in ("a", "b")}
    keys = {label: new_api_key(tenant, ["admin"], name="crafted") for label, tenant in ids.items()}
    for tenant in ids.values():
        (base / tenant).mkdir()
    env = {**_process_env(stack_env), "UNLEARND_DATASET_ROOTS": str(base)}
    port = free_port()
    api = start_api(env, port, tmp_path_factory.mktemp("crafted-api") / "api.log")
    try:
        yield Stack(api, f"http://127.0.0.1:{port}", base, ids, keys)
    finally:
        api.stop()


def _stored(c: httpx.Client) -> tuple[list, list]:
    datasets = c.get("/v1/datasets", params={"page_size": 500})
    models = c.get("/v1/models", params={"page_size": 500})
    assert datasets.status_code == 200 and models.status_code == 200
    return datasets.json()["items"], models.json()["items"]


def _peak_rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


def test_server_paths_that_cannot_be_resolved_are_422_and_store_nothing(stack):
    home = stack.home("a")
    (home / "loop.jsonl").symlink_to(home / "loop.jsonl")  # resolve() raises on a symlink to itself
    (home / "docs.jsonl").write_bytes(DOCS)
    with stack.client("a") as c:
        resp = c.post("/v1/datasets", data={"name": "docs", "server_path": str(home / "docs.jsonl")})
        assert resp.status_code == 201, resp.text
        text_ds = resp.json()["id"]
        before = _stored(c)
        cases = {
            str(home / ("x" * 300 + ".jsonl")): "File name too long",  # ENAMETOOLONG from stat
            str(home / ("x" * 300) / "docs.jsonl"): "File name too long",
            str(home / "loop.jsonl"): "",
        }
        for path, says in cases.items():
            resp = c.post("/v1/datasets", data={"name": "bad", "server_path": path})
            body = assert_problem(resp, 422)
            assert "server_path" in body["detail"] and says in body["detail"], body
            assert resp.headers.get("connection") != "close"  # a 500 made uvicorn drop the connection
        # BPE tokenizer files go through the same check
        spec = {
            "name": f"bpe-{uuid.uuid4().hex[:6]}",
            "dataset_id": text_ds,
            "architecture": "gpt2",
            "config": {
                "tokenizer": "bpe",
                "bpe_vocab_path": str(home / "loop.jsonl"),
                "bpe_merges_path": str(home / ("m" * 300)),
            },
        }
        body = assert_problem(c.post("/v1/models", json=spec), 422)
        assert "bpe_vocab_path" in body["detail"], body
        assert _stored(c) == before


def test_deeply_nested_json_lines_are_422(stack):
    nested = b'{"id": "a", "text": ' + b"[" * 2000 + b"]" * 2000 + b"}\n"
    assert len(nested) < 5000
    home = stack.home("a")
    (home / "nested.jsonl").write_bytes(nested)
    with stack.client("a") as c:
        before = _stored(c)
        files = {"file": ("nested.jsonl", nested, "application/octet-stream")}
        body = assert_problem(c.post("/v1/datasets", data={"name": "nested"}, files=files), 422, "invalid-dataset")
        assert "line 1" in body["detail"] and "nested too deeply" in body["detail"], body
        resp = c.post("/v1/datasets", data={"name": "nested", "server_path": str(home / "nested.jsonl")})
        assert "nested too deeply" in assert_problem(resp, 422, "invalid-dataset")["detail"]
        assert _stored(c) == before


def _zeros_npz(rows: int, row_bytes: int) -> bytes:
    """An .npz whose x is rows * row_bytes of float32 zeros, streamed into the zip (never in memory)."""
    buf = io.BytesIO()
    ids = np.asarray([f"s{i}" for i in range(rows)])
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, array in {"ids": ids, "y": np.arange(rows) % 2}.items():
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, array)
        with zf.open("x.npy", "w", force_zip64=True) as f:
            header = {"descr": "<f4", "fortran_order": False, "shape": (rows, row_bytes // 4)}
            np.lib.format.write_array_header_1_0(f, header)
            chunk = bytes(16 * 1024 * 1024)
            for _ in range(rows * row_bytes // len(chunk)):
                f.write(chunk)
    return buf.getvalue()


def test_an_npz_of_a_gigabyte_of_zeros_is_refused_before_it_is_decompressed(stack):
    data = _zeros_npz(4, 256 * 1024 * 1024)  # 1 GiB of zeros in a few MB
    assert len(data) < 8 * 1024 * 1024
    with stack.client("a") as c:
        before = _stored(c)
        peak = _peak_rss_kb(stack.api.proc.pid)
        started = time.monotonic()
        files = {"file": ("zeros.npz", data, "application/octet-stream")}
        resp = c.post("/v1/datasets", data={"name": "zeros"}, files=files)
        took = time.monotonic() - started
        body = assert_problem(resp, 422, "invalid-dataset")
        assert "bytes uncompressed" in body["detail"] and "x.npy" in body["detail"], body
        assert took < 3, f"took {took:.1f} s"
        grown_mb = (_peak_rss_kb(stack.api.proc.pid) - peak) / 1024
        assert grown_mb < 150, f"the API's peak memory grew by {grown_mb:.0f} MB"
        assert _stored(c) == before


def _set_declared_size(data: bytes, member: str, size: int) -> bytes:
    """The zip with ``member``'s uncompressed size rewritten in its local and central headers."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info, central = zf.getinfo(member), zf.start_dir
    out[info.header_offset + 22 : info.header_offset + 26] = size.to_bytes(4, "little")
    pos = central
    while out[pos : pos + 4] == b"PK\x01\x02":
        name_len, extra_len, comment_len = (int.from_bytes(out[pos + o : pos + o + 2], "little") for o in (28, 30, 32))
        if out[pos + 46 : pos + 46 + name_len].decode() == member:
            out[pos + 24 : pos + 28] = size.to_bytes(4, "little")
        pos += 46 + name_len + extra_len + comment_len
    return bytes(out)


def test_a_lying_declared_size_is_refused(stack):
    """x.npy's header says 4x4 float32 and the zip says so too, but its stream holds 4x4000: zipfile
    stops at the declared size and the CRC of what it read is wrong."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in {"ids": np.asarray(["a", "b", "c", "d"]), "y": np.asarray([0, 1, 0, 1])}.items():
            with zf.open(f"{name}.npy", "w") as f:
                np.lib.format.write_array(f, array)
        with zf.open("x.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (4, 4)})
            f.write(bytes(4 * 4000 * 4))
    honest = buf.getvalue()
    with zipfile.ZipFile(io.BytesIO(honest)) as zf:
        header_len = zf.getinfo("x.npy").file_size - 4 * 4000 * 4
    smaller = _set_declared_size(honest, "x.npy", header_len + 4 * 4 * 4)
    larger = _set_declared_size(honest, "x.npy", 3 * 1024**3)
    with stack.client("a") as c:
        before = _stored(c)
        for data, says in ((honest, "declares shape (4, 4)"), (smaller, "CRC"), (larger, "bytes uncompressed")):
            files = {"file": ("lying.npz", data, "application/octet-stream")}
            body = assert_problem(c.post("/v1/datasets", data={"name": "lying"}, files=files), 422, "invalid-dataset")
            assert says in body["detail"], body
        assert _stored(c) == before


def test_a_tenant_reads_only_its_own_directory_under_the_roots(stack):
    a, b = stack.ids["a"], stack.ids["b"]
    theirs = stack.home("a") / "private.jsonl"
    theirs.write_bytes(DOCS)
    with stack.client("b") as c:
        before = _stored(c)
        for path in (theirs, stack.home("b") / ".." / a / "private.jsonl"):
            body = assert_problem(c.post("/v1/datasets", data={"name": "x", "server_path": str(path)}), 403)
            assert body["type"] == "/problems/server-path-refused" and f"<root>/{b}/" in body["detail"], body
        assert _stored(c) == before
    with stack.client("a") as c:
        resp = c.post("/v1/datasets", data={"name": "private", "server_path": str(theirs)})
        assert resp.status_code == 201, resp.text
        assert resp.json()["num_rows"] == 20 and resp.json()["source"] == "server_path"
