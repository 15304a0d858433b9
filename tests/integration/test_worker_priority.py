"""The worker's pool process runs jobs at a lower CPU priority than the API (workers/priority.py)."""

from __future__ import annotations

import os
from pathlib import Path

from app.settings import get_settings
from workers.priority import NICE


def _nice(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[16])  # field 19 of proc(5); the split starts at field 3


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()[1])
            except OSError:
                continue
            if ppid == pid:
                found.append(int(entry))
    return found


def test_the_pool_process_runs_below_the_api(worker, api_url):
    assert get_settings().worker_cpu_priority == "idle"  # the default
    nice = NICE["idle"]
    [pool] = _children(worker.proc.pid)  # concurrency 1: one pool process runs the jobs
    assert os.sched_getscheduler(pool) == os.SCHED_IDLE
    assert _nice(pool) == nice
    group = Path(f"/proc/{pool}/autogroup")
    if group.exists():  # the kernel weighs sessions against each other: the worker's session is lowered too
        assert group.read_text().split()[-1] == str(nice)
    port = api_url.rpartition(":")[2].encode()
    [api] = [p for p in os.listdir("/proc") if p.isdigit() and b"--port\0" + port + b"\0" in _cmdline(p)]
    assert _nice(int(api)) == 0 and os.sched_getscheduler(int(api)) == os.SCHED_OTHER  # the API: the default


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""
