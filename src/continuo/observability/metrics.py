"""The Prometheus metrics, in a registry of Continuo's own (served by ``GET /metrics``).

The per-request counters and histograms are kept by ``Counted`` and ``Timed`` below and
handed to ``prometheus_client`` as metric families at each scrape: its own ``Counter`` and
``Histogram`` cost about 45 Python calls a request (a check, a lock and a value object
per increment, a loop over the buckets per observation; docs/performance.md), these one
lock and a few operations each. The rare ones (errors, retention) and the gauges stay
``prometheus_client``'s own.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# From a fraction of a millisecond (what Continuo adds, a store operation) to minutes (a
# long generation).
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount


class HistogramChild:
    __slots__ = ("_lock", "bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: over every bound (+Inf)
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        with self._lock:
            self.sum += amount
            self.counts[bisect_left(self.bounds, amount)] += 1  # the first bound >= amount


Child = TypeVar("Child", CounterChild, HistogramChild)


class _Family(Generic[Child]):
    """A labelled metric of Continuo's own, registered as a collector: its children by
    label values, and the metric family ``prometheus_client`` exposes."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = labelnames
        self.children: dict[tuple[str, ...], Child] = {}
        self._lock = threading.Lock()
        registry.register(self)

    def labels(self, *values: str) -> Child:
        child = self.children.get(values)
        if child is None:
            with self._lock:
                child = self.children.setdefault(values, self._new_child())
        return child

    def describe(self) -> list[Metric]:
        return [self._family()]

    def _new_child(self) -> Child:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        raise NotImplementedError


class Counted(_Family[CounterChild]):
    """A counter with labels (``labels(...).inc(n)``), exposed as ``<name>_total``."""

    def _new_child(self) -> CounterChild:
        return CounterChild()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for values, child in list(self.children.items()):
            family.add_metric(list(values), child.value)
        yield family


class Timed(_Family[HistogramChild]):
    """A histogram with labels (``labels(...).observe(seconds)``)."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: list[str],
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
    ) -> None:
        self.buckets = buckets
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> HistogramChild:
        return HistogramChild(self.buckets)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        bounds = [*map(floatToGoString, self.buckets), "+Inf"]
        for values, child in list(self.children.items()):
            with child._lock:
                counts, total = list(child.counts), child.sum
            cumulative, running = [], 0
            for bound, count in zip(bounds, counts, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            family.add_metric(list(values), cumulative, total)
        yield family


REQUESTS = Counted(
    "continuo_requests",
    "HTTP requests answered, by route template, method, status and requested model",
    ["route", "method", "status", "model"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Timed(
    "continuo_request_duration_seconds",
    "Whole requests, from the first byte in to the last byte out (streams included)",
    ["route", "method"],
    buckets=SLOW,
    registry=REGISTRY,
)
ADDED_SECONDS = Timed(
    "continuo_added_duration_seconds",
    "Continuo's own time in requests that called an upstream: the whole request less the upstream's time",
    ["route"],
    buckets=FAST,
    registry=REGISTRY,
)
UPSTREAM_FIRST_TOKEN_SECONDS = Timed(
    "continuo_upstream_time_to_first_token_seconds",
    "From opening an upstream call to its first generated token (text, reasoning or tool call)",
    ["provider", "model"],
    buckets=SLOW,
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Timed(
    "continuo_upstream_duration_seconds",
    "Upstream calls, from opening to the end of their stream",
    ["provider", "model"],
    buckets=SLOW,
    registry=REGISTRY,
)
UPSTREAM_ERRORS = Counter(
    "continuo_upstream_errors",
    "Upstream calls that failed, by provider and kind (timeout, rejected: a 4xx, failed: anything else)",
    ["provider", "kind"],
    registry=REGISTRY,
)
TOKENS = Counted(
    "continuo_tokens",
    "Tokens the upstreams reported, by requested model and direction (input, output)",
    ["model", "direction"],
    registry=REGISTRY,
)
ACTIVE_STREAMS = Gauge("continuo_active_streams", "Server-sent event streams open now", registry=REGISTRY)
ACTIVE_WEBSOCKETS = Gauge("continuo_active_websockets", "WebSocket connections open now", registry=REGISTRY)
BACKGROUND_RUNS = Gauge(
    "continuo_background_runs",
    "Background responses in the store by status (queued, in_progress, completed, failed, cancelled, "
    "incomplete), across every replica that shares the database; read at each scrape",
    ["status"],
    registry=REGISTRY,
)
STORE_SECONDS = Timed(
    "continuo_store_operation_duration_seconds",
    "Store operations, by operation",
    ["operation"],
    buckets=FAST,
    registry=REGISTRY,
)
RETENTION_DELETED = Counter(
    "continuo_retention_deleted",
    "Responses and conversations deleted by retention in this process, by kind",
    ["kind"],
    registry=REGISTRY,
)

BACKGROUND_STATUSES = ("queued", "in_progress", "completed", "failed", "cancelled", "incomplete")

# A client may send any model name to a "*" route: past this many distinct names, the
# rest are counted as "other", so the metrics stay bounded.
MAX_MODEL_LABELS = 200
_models: set[str] = set()


def model_label(name: str | None) -> str:
    if not name:
        return ""
    if name in _models:
        return name
    if len(_models) >= MAX_MODEL_LABELS:
        return "other"
    _models.add(name)
    return name


def set_background_counts(counts: dict[str, int]) -> None:
    for status in BACKGROUND_STATUSES:
        BACKGROUND_RUNS.labels(status).set(counts.get(status, 0))


def render() -> bytes:
    text: bytes = generate_latest(REGISTRY)
    return text
