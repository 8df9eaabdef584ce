"""The server's Prometheus metrics (one registry per app): requests by endpoint and status, request latency, queue
depth, inputs per forward and forward time; and the ASGI middleware that counts every response, refusals included."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from tuneforge.inference.server_limits import Message, Receive, Scope, Send

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """Counters and histograms in their own ``CollectorRegistry``, so two apps in one process never share them.

    >>> # m = ServerMetrics(lambda: 0); m.observe_batch(8, 0.02); m.render()[0].decode()
    """

    def __init__(self, queue_depth: Callable[[], float], endpoints: Callable[[], Collection[str]] = frozenset):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.endpoints = endpoints  # asked per request: routes added after the app was built count too
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("tuneforge_requests", "HTTP requests by endpoint and status code",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("tuneforge_request_duration_seconds", "Time from request to the end of its "
                                 "response, by endpoint", ["endpoint"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.queue = Gauge("tuneforge_queue_depth", "Inputs waiting for a forward", registry=self.registry)
        self.queue.set_function(queue_depth)
        self.batch = Histogram("tuneforge_batch_size", "Inputs per forward (gathered across concurrent requests)",
                               buckets=BATCH_BUCKETS, registry=self.registry)
        self.forward = Histogram("tuneforge_forward_seconds", "Time of one forward (predict call)",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)

    def endpoint(self, path: str) -> str:
        """The path as a label, unknown paths pooled so a scanner cannot grow the label set without bound."""
        return path if path in self.endpoints() else "other"

    def observe_request(self, path: str, status: int, seconds: float) -> None:
        label = self.endpoint(path)
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label).observe(seconds)

    def observe_batch(self, inputs: int, seconds: float) -> None:
        self.batch.observe(inputs)
        self.forward.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        """The text exposition format and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Outermost middleware: sees every status, the 401/413 of the inner middlewares too. A request that ends in
    an exception before any response counts as 500."""

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ServerMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.metrics.observe_request(scope["path"], status, time.perf_counter() - start)


def metric_value(text: str, name: str, labels: dict[str, Any] | None = None) -> float:
    """One sample's value from the exposition text (0 when absent): for tests and the bench."""
    from prometheus_client.parser import text_string_to_metric_families

    want = {k: str(v) for k, v in (labels or {}).items()}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                return float(sample.value)
    return 0.0
