"""Jobs run at normal CPU priority unless an operator opts in (workers/priority.py); a lower
priority never applies to a process that also serves the API (the embedded mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.settings import get_settings
from tests.processes import ROOT


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


def test_the_pool_process_runs_at_normal_priority_by_default(worker):
    assert get_settings().worker_cpu_priority == "normal"  # the default
    [pool] = _children(worker.proc.pid)  # concurrency 1: one pool process runs the jobs
    assert os.sched_getscheduler(pool) == os.SCHED_OTHER
    assert _nice(pool) == _nice(worker.proc.pid)


def _priority_after(code: str) -> tuple[int, int]:
    """(scheduler policy, nice) of a fresh process after running ``code``."""
    script = f"import os\n{code}\nprint(os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0))"
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    policy, nice = out.stdout.split()
    return int(policy), int(nice)


def test_idle_priority_is_opt_in_and_never_lowers_an_api_process():
    base = os.getpriority(os.PRIO_PROCESS, 0)
    lowered = _priority_after("from workers.priority import lower_cpu_priority; lower_cpu_priority('idle')")
    assert lowered == (os.SCHED_IDLE, max(base, 19))
    serving = _priority_after(
        "from workers.priority import lower_cpu_priority, mark_serves_api\n"
        "mark_serves_api(); lower_cpu_priority('idle')"
    )
    assert serving == (os.SCHED_OTHER, base)
