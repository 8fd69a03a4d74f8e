"""Continuo's own counters and histograms (observability/metrics.py) expose exactly what
prometheus_client's would for the same observations."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from continuo.observability.metrics import FAST, Counted, Timed


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if not sample.name.endswith("_created"):  # a time of creation: never equal
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_counts_and_buckets_match_prometheus_client() -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    timed = Timed("t_seconds", "doc", ["route"], buckets=FAST, registry=ours)
    histogram = Histogram("t_seconds", "doc", ["route"], buckets=FAST, registry=theirs)
    counted = Counted("c", "doc", ["model", "direction"], registry=ours)
    counter = Counter("c", "doc", ["model", "direction"], registry=theirs)
    # On a bound, between bounds, under the first, over the last, and zero.
    values = [0.0, 0.00005, 0.0001, 0.0002, 0.001, 0.0011, 2.5, 3.0, 600.0, 0.25]
    for i, value in enumerate(values):
        route = "/a" if i % 3 else "/b"
        timed.labels(route).observe(value)
        histogram.labels(route).observe(value)
        counted.labels("m", "input").inc(i)
        counter.labels("m", "input").inc(i)
    counted.labels("m", "output").inc()
    counter.labels("m", "output").inc()
    assert samples(ours) == samples(theirs)
    assert samples(ours)[("t_seconds_bucket", (("le", "0.0001"), ("route", "/a")))] == 2.0  # 0.00005 and 0.0001
