"""Fault injection for tests/faults/test_artifact_store_full.py, loaded only by the worker that test
starts (its PYTHONPATH begins with this directory): while the file named by
``UNLEARND_FAULT_DISK_FULL_FLAG`` exists, every write into the artifact store's staging area stores
its first 512 bytes and then fails with ENOSPC, as a full disk does. Nothing in the app knows about it."""

import builtins
import errno
import os

_FLAG = os.environ.get("UNLEARND_FAULT_DISK_FULL_FLAG")
_ROOM = 512

if _FLAG:
    import app.storage.local as _local

    _real_open = builtins.open

    class _FullDisk:
        def __init__(self, fh):
            self._fh = fh
            self._written = 0

        def write(self, data):
            room = _ROOM - self._written
            if len(data) > room:
                self._fh.write(data[: max(room, 0)])
                self._written = _ROOM
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            self._written += len(data)
            return self._fh.write(data)

        def __getattr__(self, name):
            return getattr(self._fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._fh.close()

    def _open(path, mode="r", *args, **kwargs):
        fh = _real_open(path, mode, *args, **kwargs)
        if "w" in mode and "/.staging/" in str(path) and os.path.exists(_FLAG):
            return _FullDisk(fh)
        return fh

    _local.open = _open
