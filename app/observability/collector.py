"""Metrics read at scrape time from where the truth is: jobs from Postgres, the queue from Redis,
live workers from their heartbeats.

Why not count in the worker: it is another process (another machine, in production), its pool
child is recycled, and prometheus_client's multiprocess mode only spans one host. Reading the
database instead is exact, survives restarts, and costs a few GROUP BY queries per scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from app.core.redis_client import redis_client
from app.db.session import new_read_session
from app.jobs import stuck
from app.observability import repository
from app.queue import housekeeping_queue, job_queues
from app.settings import get_settings
from app.worker_status.store import get_heartbeat_store

log = logging.getLogger(__name__)
# Jobs run from seconds (a small fine-tune) to hours (a retrain of a large model).
DURATION_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0)
# kombu's Redis transport keeps priorities 3, 6 and 9 in sibling lists named queue + "\x06\x16" + n
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_REQUEUE_REASONS = {stuck.LEASE_EXPIRED: "lease_expired", stuck.NO_HEARTBEAT: "no_heartbeat"}


def _slug(problem_type: str | None) -> str:
    return (problem_type or "unknown").removeprefix("/problems/")


def database_metrics() -> list[Metric]:
    jobs = GaugeMetricFamily(
        "unlearnd_jobs", "Jobs waiting or running, from the database", labels=["state", "kind", "method"]
    )
    durations = HistogramMetricFamily(
        "unlearnd_job_duration_seconds",
        "Run time of finished jobs (last attempt: claim to end), by outcome",
        labels=["kind", "method", "outcome"],
    )
    failures = CounterMetricFamily(
        "unlearnd_job_failures", "Failed jobs by the problem type of their error", labels=["kind", "method", "reason"]
    )
    requeued = CounterMetricFamily(
        "unlearnd_jobs_requeued", "Running jobs taken back from a lost worker (stuck jobs)", labels=["reason"]
    )
    with new_read_session() as db:
        for state, kind, method, n in repository.unfinished_jobs(db):
            jobs.add_metric([state, kind, method], n)
        for kind, method, state, count, total, *cumulative in repository.finished_durations(db, DURATION_BUCKETS):
            buckets = [(str(bound), int(n or 0)) for bound, n in zip(DURATION_BUCKETS, cumulative, strict=True)]
            buckets.append(("+Inf", int(count)))
            durations.add_metric([kind, method, state.lower()], buckets, float(total or 0.0))
        for kind, method, problem_type, n in repository.failures(db):
            failures.add_metric([kind, method, _slug(problem_type)], n)
        for reason, n in repository.requeues(db):
            requeued.add_metric([_REQUEUE_REASONS.get(reason, "other")], n)
    return [jobs, durations, failures, requeued]


def broker_metrics() -> list[Metric]:
    settings = get_settings()
    if not settings.broker_url.startswith("redis"):
        return []  # the embedded in-memory broker: nothing to measure from outside
    client = redis_client(settings.broker_url)
    queues = [*job_queues(settings.queue_name), housekeeping_queue(settings.queue_name)]
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(queue + suffix)
        lengths = pipe.execute()
    gauge = GaugeMetricFamily("unlearnd_broker_queue_length", "Messages waiting in the broker queue", labels=["queue"])
    per_queue = len(_PRIORITY_SUFFIXES)
    for i, queue in enumerate(queues):
        gauge.add_metric([queue], sum(lengths[i * per_queue : (i + 1) * per_queue]))
    return [gauge]


def worker_metrics() -> list[Metric]:
    beats = get_heartbeat_store().alive()
    gauge = GaugeMetricFamily("unlearnd_workers", "Workers with a live heartbeat", labels=["busy"])
    busy = sum(1 for b in beats if b.get("current_job"))
    gauge.add_metric(["true"], busy)
    gauge.add_metric(["false"], len(beats) - busy)
    return [gauge]


SOURCES: dict[str, Callable[[], list[Metric]]] = {
    "database": database_metrics,
    "broker": broker_metrics,
    "heartbeats": worker_metrics,
}


class ServiceCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("unlearnd_metrics_source_up", "1 if the source answered this scrape", labels=["source"])
        for name, source in SOURCES.items():
            try:
                metrics = source()
            except Exception as exc:  # a scrape must still answer (and say which source failed)
                log.warning("metrics source %s failed: %s", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from metrics
        yield up

    def describe(self) -> Iterable[Metric]:
        return []  # no collect() (and no database query) at registration
