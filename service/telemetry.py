"""Prometheus metrics: requests by route and status, their latency, jobs submitted (this
process's, in the default registry), and the queue's, computed from SQL (service/job_metrics.py,
in a registry of each app's own)."""

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "gradq_http_requests_total", "HTTP requests answered.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "gradq_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"]
)
JOBS_SUBMITTED = Counter("gradq_jobs_submitted_total", "Jobs accepted by POST /v1/jobs.")


class RequestMetrics:
    """Counts and times every request, labelled by route template (not the raw path, whose
    ids would make one series per job)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)


def exposition(*registries: CollectorRegistry) -> tuple[bytes, str]:
    """The process's metrics and those of ``registries``, in Prometheus's text format."""
    return b"".join(generate_latest(r) for r in (REGISTRY, *registries)), CONTENT_TYPE_LATEST
