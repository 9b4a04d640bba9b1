"""Prometheus metrics: API counters (multiprocess-safe under gunicorn) and job metrics read from Redis at scrape."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from core.states import JobState

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


# Every state a job can be in is exposed (0 when no job is in it) so series do not appear and vanish.
JOB_STATES = tuple(JobState)


class JobsCollector:
    """Job, chunk and queue metrics read from Redis at scrape time, so every API process reports the same state.

    When Redis cannot be read, only `predictq_redis_up 0` is exposed (the scrape still answers 200).
    """

    def __init__(self, jobs: Any) -> None:
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        """Jobs by state, rows and chunks counters, chunk latency histogram, queue depth, queued rows and bytes."""
        try:
            states = self._jobs.state_counts()
            counters = self._jobs.metrics()
            depth = self._jobs.queue_depth()
            queued_rows = self._jobs.queued_rows()
            queued_bytes = self._jobs.queued_bytes()
        except Exception as exc:
            log.warning("job metrics unavailable: %s", exc)
            yield _gauge("predictq_redis_up", "1 when the job metrics could be read from Redis", 0)
            return
        yield _gauge("predictq_redis_up", "1 when the job metrics could be read from Redis", 1)
        jobs = GaugeMetricFamily("predictq_jobs", "Live (unexpired) jobs by state", labels=["state"])
        for state in (*JOB_STATES, *sorted(set(states) - set(JOB_STATES))):
            jobs.add_metric([state], float(states.get(state, 0)))
        yield jobs
        yield _counter("predictq_rows_scored", "Rows scored by the workers (committed chunks)", counters["rows_scored"])
        yield _counter("predictq_rows_failed", "Rows the workers committed as row errors", counters["rows_failed"])
        chunks = CounterMetricFamily("predictq_chunks", "Chunks committed, by outcome", labels=["outcome"])
        chunks.add_metric(["scored"], float(counters["chunks_scored"]))
        chunks.add_metric(["failed"], float(counters["chunks_failed"]))
        yield chunks
        refused = CounterMetricFamily(
            "predictq_chunk_commits_refused",
            "Chunk commits refused: duplicate (another attempt committed first, e.g. a worker cut off from Redis "
            "past its lease), closed (the job was cancelled or failed meanwhile)", labels=["reason"])
        for reason, count in sorted(counters.get("commits_refused", {}).items()):
            refused.add_metric([reason], float(count))
        yield refused
        yield HistogramMetricFamily(
            "predictq_chunk_seconds", "Time a worker spent scoring a chunk (committed chunks)",
            buckets=[(le, float(count)) for le, count in counters["seconds_buckets"]],
            sum_value=float(counters["seconds_sum"]),
        )
        yield _gauge("predictq_queue_depth", "Chunk messages waiting in the broker queue", depth)
        yield _gauge("predictq_queued_rows", "Rows counted at staging (JSON arrays) in open jobs and not yet scored",
                     queued_rows)
        yield _gauge("predictq_queued_bytes", "Bytes staged in open jobs and not yet scored", queued_bytes)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    """A gauge family with one unlabelled sample."""
    family = GaugeMetricFamily(name, documentation)
    family.add_metric([], float(value))
    return family


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    """A counter family (exposed as `<name>_total`) with one unlabelled sample."""
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], float(value))
    return family


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
