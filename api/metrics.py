"""Prometheus metrics: API counters (multiprocess-safe under gunicorn) and queue gauges read from Redis at scrape."""

from __future__ import annotations

import collections
import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from worker.job_store import OPEN_STATES

log = logging.getLogger(__name__)

class ApiMetrics:
    """The API's own counters, in a registry of their own (created on first use, never at import)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "predictq_http_requests", "HTTP requests answered, by route and status", ["endpoint", "status"],
            registry=self.registry,
        )
        self.predict_rows = Counter("predictq_predict_rows", "Rows scored inline by /predict", registry=self.registry)
        self.predict_latency = Histogram(
            "predictq_predict_seconds", "Time to answer /predict", registry=self.registry,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.uploaded_rows = Counter(
            "predictq_uploaded_rows", "Rows read from job uploads and staged", registry=self.registry
        )


@functools.cache
def api_metrics() -> ApiMetrics:
    """This process's one ApiMetrics."""
    return ApiMetrics()


class QueueCollector:
    """Gauges computed from Redis at scrape time, so every API process reports the same shared state."""

    def __init__(self, jobs: Any, redis_client: Any, queue_name: str) -> None:
        self._jobs = jobs
        self._redis = redis_client
        self._queue_name = queue_name

    def collect(self) -> Iterator[Metric]:
        """Open jobs by state, rows waiting to be scored, tasks in the broker queue (absent when Redis is down)."""
        try:
            queued_rows = self._jobs.queued_rows()
            depth = self._redis.llen(self._queue_name)
            store = self._jobs.store
            states = collections.Counter(f.get("state") for f in store.many_fields(store.active_jobs()) if f)
        except Exception as exc:
            log.warning("queue metrics unavailable: %s", exc)
            return
        jobs = GaugeMetricFamily("predictq_open_jobs", "Jobs not finished yet, by state", labels=["state"])
        for state in OPEN_STATES:
            jobs.add_metric([state], float(states.get(state, 0)))
        yield jobs
        rows = GaugeMetricFamily("predictq_queued_rows", "Rows in jobs not yet scored")
        rows.add_metric([], float(queued_rows))
        yield rows
        tasks = GaugeMetricFamily("predictq_queue_depth", "Chunk tasks waiting in the broker queue")
        tasks.add_metric([], float(depth))
        yield tasks


def render(extra: Any) -> bytes:
    """The exposition text: API counters (summed over gunicorn workers when multiprocess) plus `extra`'s gauges."""
    registry = CollectorRegistry(auto_describe=True)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_Forward(api_metrics().registry))
    registry.register(extra)
    return generate_latest(registry)


class _Forward:
    """Exposes another registry's metrics inside a scrape-time registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        """The source registry's metrics."""
        return iter(self._source.collect())
