"""The Prometheus metrics, in a registry of Continuo's own (served by ``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# From a fraction of a millisecond (what Continuo adds, a store operation) to minutes (a
# long generation).
FAST = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

REQUESTS = Counter(
    "continuo_requests",
    "HTTP requests answered, by route template, method, status and requested model",
    ["route", "method", "status", "model"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "continuo_request_duration_seconds",
    "Whole requests, from the first byte in to the last byte out (streams included)",
    ["route", "method"],
    buckets=SLOW,
    registry=REGISTRY,
)
ADDED_SECONDS = Histogram(
    "continuo_added_duration_seconds",
    "Continuo's own time in requests that called an upstream: the whole request less the upstream's time",
    ["route"],
    buckets=FAST,
    registry=REGISTRY,
)
UPSTREAM_FIRST_TOKEN_SECONDS = Histogram(
    "continuo_upstream_time_to_first_token_seconds",
    "From opening an upstream call to its first generated token (text, reasoning or tool call)",
    ["provider", "model"],
    buckets=SLOW,
    registry=REGISTRY,
)
UPSTREAM_SECONDS = Histogram(
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
TOKENS = Counter(
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
STORE_SECONDS = Histogram(
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
