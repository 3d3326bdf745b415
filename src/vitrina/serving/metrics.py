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
        self.lists = Counter(
            "vitrina_precomputed_answers",
            "Personal recommendation requests answered from the batch job's lists (hit) or scored online (miss)",
            ["outcome"],
            **kw,
        )
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

    def _registry(self) -> CollectorRegistry:
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return registry
        assert self.registry is not None
        return self.registry

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self._registry()), CONTENT_TYPE_LATEST

    def summary(self) -> list[dict[str, object]]:
        """Per route (all workers): requests, errors (5xx), and p50 / p99 latency read off the
        histogram (the upper edge of the bucket the quantile falls in)."""
        buckets: dict[str, dict[float, float]] = {}
        counts: dict[str, float] = {}
        errors: dict[str, float] = {}
        for family in self._registry().collect():
            if family.name != "vitrina_request_seconds":
                continue
            for sample in family.samples:
                route = f"{sample.labels.get('method')} {sample.labels.get('route')}"
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    buckets.setdefault(route, {})
                    buckets[route][le] = buckets[route].get(le, 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    counts[route] = counts.get(route, 0.0) + sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors[route] = errors.get(route, 0.0) + sample.value
        rows: list[dict[str, object]] = []
        for route, total in sorted(counts.items(), key=lambda kv: -kv[1]):
            edges = sorted(buckets.get(route, {}).items())

            def quantile(q: float, edges: list[tuple[float, float]] = edges, total: float = total) -> float:
                return next((le for le, c in edges if c >= q * total), float("inf")) * 1000

            rows.append(
                {
                    "route": route,
                    "requests": int(total),
                    "errors": int(errors.get(route, 0)),
                    "p50_ms": quantile(0.5),
                    "p99_ms": quantile(0.99),
                }
            )
        return rows
