"""The API's metric registry: what is read at scrape time (collector.py) plus the HTTP request
metrics this process counts itself. With ``unlearnd api --workers N`` each process counts its own
requests; the job metrics are the same from every process (they come from the database)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest

from app.observability.collector import ServiceCollector

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
REGISTRY.register(ServiceCollector())

HTTP_REQUESTS = Counter(
    "unlearnd_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=REGISTRY
)
HTTP_DURATION = Histogram(
    "unlearnd_http_request_duration_seconds",
    "Time the application spent on a request",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


def render() -> bytes:
    return generate_latest(REGISTRY)
