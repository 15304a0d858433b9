"""Unlearning jobs run at a lower CPU priority than the API (``UNLEARND_WORKER_NICE``, default 10).

A job is batch work whose deadline is days away; a POST or a poll has someone waiting on it. Where
the API and a worker share CPU cores (one box, as in the service benchmark), a job at the API's
priority took a core's worth of CPU whenever it wanted it, and every round trip of a request waited
behind it (benchmarks/results/service.md). A niced job still gets every cycle the API leaves idle.

Linux groups the processes of each session ("autogroup", on by default on most distributions, and
on the benchmark's machine): a process's nice value then weighs only against the processes of its
own session, and CPU time is shared between sessions as equals. The worker is usually a session of
its own, so its session's weight is lowered too (``/proc/self/autogroup``) where the kernel has one.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)
AUTOGROUP = "/proc/self/autogroup"


def lower_cpu_priority(nice: int) -> None:
    """Raise this process's nice value to ``nice`` (never lower it), and its autogroup's. Call before
    the process starts threads: on Linux a thread inherits its creator's nice value."""
    if nice <= 0:
        return
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < nice:
        os.nice(nice - current)
    try:
        with open(AUTOGROUP, "w") as group:
            group.write(str(nice))
    except OSError:  # no autogroups (another kernel, or a CPU cgroup such as a container's): nice alone
        log.debug("no autogroup to lower", exc_info=True)
