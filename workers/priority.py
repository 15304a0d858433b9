"""An operator may run unlearning jobs below the API's CPU priority (``UNLEARND_WORKER_CPU_PRIORITY``,
default ``normal``).

A job is batch work whose deadline is days away; a POST or a poll has someone waiting on it. Where
the API and a worker share CPU cores, a lower priority lets requests go first. It is opt-in: on a
busy host an idle-priority job process may make no progress at all, and it never applies to a
process that also serves the API (the embedded mode's solo pool runs jobs in the API's process):

- ``idle``: Linux's SCHED_IDLE policy: any other runnable thread that wakes up takes the CPU from
  the job at once; the job runs on what nothing else wants (a dedicated GPU box: all of it).
- ``low``: nice 10, a ninth of a default process's share when both want the CPU.
- ``normal``: as the API.

Linux also groups the processes of each session ("autogroup", on by default on most distributions
and on the benchmark's machine), and shares CPU between the groups as equals whatever their nice
values: the worker is usually a session of its own, so its group's nice is raised too
(``/proc/self/autogroup``) where the kernel has one. Call before the process starts threads: a
thread inherits its creator's priority.
"""

from __future__ import annotations

import logging
import os
from typing import Literal

log = logging.getLogger(__name__)
AUTOGROUP = "/proc/self/autogroup"
CpuPriority = Literal["normal", "low", "idle"]
NICE: dict[str, int] = {"normal": 0, "low": 10, "idle": 19}


_serves_api = False


def mark_serves_api() -> None:
    """This process also serves the API: never lower it (the embedded mode calls this first)."""
    global _serves_api
    _serves_api = True


def lower_cpu_priority(priority: CpuPriority) -> None:
    nice = NICE[priority]
    if nice == 0:
        return
    if _serves_api:
        log.warning("UNLEARND_WORKER_CPU_PRIORITY=%s ignored: this process also serves the API", priority)
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < nice:
        os.nice(nice - current)
    if priority == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    try:
        with open(AUTOGROUP, "w") as group:
            group.write(str(nice))
    except OSError:  # no autogroups (another kernel, or a CPU cgroup such as a container's)
        log.debug("no autogroup to lower", exc_info=True)
