"""Prometheus metrics of a worker. Under several uvicorn workers `vitrina serve run` sets
PROMETHEUS_MULTIPROC_DIR, and /metrics then aggregates every worker's samples."""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]

# Latency buckets (seconds) around the service's targets: p50 <= 5 ms, p99 <= 30 ms.
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # Multiprocess mode writes samples to files; a private registry keeps tests independent.
        self.registry = None if self.multiprocess else CollectorRegistry()
        kw = {"registry": self.registry} if self.registry is not None else {}
        self.latency = Histogram(
            "vitrina_request_seconds", "Request latency by route", ["method", "route", "status"], buckets=BUCKETS, **kw
        )
        self.requests = Counter("vitrina_requests", "Requests by route and status", ["method", "route", "status"], **kw)
        gauge = {"multiprocess_mode": "max"} if self.multiprocess else {}
        self.items = Gauge("vitrina_index_items", "Items the serving view holds", **gauge, **kw)
        self.version = Gauge("vitrina_model_version_info", "Serving version (label)", ["version"], **gauge, **kw)
        self._version: str | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.latency.labels(*labels).observe(seconds)
        self.requests.labels(*labels).inc()

    def set_model(self, version: str, items: int) -> None:
        if version != self._version:
            if self._version is not None:
                self.version.labels(self._version).set(0)
            self.version.labels(version).set(1)
            self._version = version
        self.items.set(items)

    def render(self) -> tuple[bytes, str]:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
