"""The worker's Prometheus metrics (one registry per app, so tests can build several)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "bindwatch_stream_events",
            "Events seen by stage and result (new, duplicate, too_late, invalid, ignored).",
            ["stage", "result"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "bindwatch_stream_alerts",
            "Alerts emitted by rule and status.",
            ["rule", "status"],
            registry=self.registry,
        )
        self.lag = Gauge(
            "bindwatch_stream_event_time_lag_seconds",
            "Wall clock minus the occurrence time of the last event processed, by stage.",
            ["stage"],
            registry=self.registry,
        )
        self.deleted = Counter(
            "bindwatch_stream_subjects_deleted",
            "Quiet subjects removed from state.",
            ["stage"],
            registry=self.registry,
        )
        self.firing = Gauge(
            "bindwatch_stream_firing_subjects",
            "Subjects with a firing alert on this worker.",
            ["stage"],
            registry=self.registry,
        )
        self.batch = Histogram(
            "bindwatch_stream_batch_items",
            "Items (failures and ticks) per batch, by stage: small batches under load mean per-batch costs dominate.",
            ["stage"],
            buckets=(1, 5, 20, 50, 100, 250, 500, 1000, 2500, 5000, 10000),
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            "bindwatch_stream_batch_seconds",
            "Time to process one batch, by stage (tables, rules, alerts acknowledged, events forwarded).",
            ["stage"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.waited = Histogram(
            "bindwatch_stream_batch_wait_seconds",
            "Age of a batch's oldest record when processing starts (its Kafka timestamp to now), by stage: "
            "the stage's queueing delay, part of every alert's latency.",
            ["stage"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.compiled_core = Gauge(
            "bindwatch_stream_compiled_core",
            "1 when this worker runs the compiled stream core (stream/native.py), 0 when it runs the Python source "
            "(no compiler at install, or BINDWATCH_NATIVE=off): the source costs about 1.2x the CPU per event.",
            registry=self.registry,
        )
        self.gc_seconds = Counter(
            "bindwatch_stream_gc_seconds",
            "Time in Python's cycle collector, by the oldest generation collected (0, 1, 2): its share of a second is "
            "the share of the worker's main thread it takes (BINDWATCH_GC_THRESHOLD).",
            ["generation"],
            registry=self.registry,
        )
        self._seen: dict[tuple[str, str], Any] = {}
        self._gc_started = 0.0

    def time_gc(self) -> Callable[[str, dict[str, int]], None]:
        """Time every collection of the cycle collector from now on (``gc.callbacks``: a call at each start and
        stop, none per object), into ``gc_seconds``; returns the callback (``gc.callbacks.remove`` stops it)."""
        children = [self.gc_seconds.labels(str(g)) for g in range(3)]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_started = time.perf_counter()
            else:
                children[info["generation"]].inc(time.perf_counter() - self._gc_started)

        gc.callbacks.append(on_gc)
        return on_gc

    def seen(self, stage: str, result: str, n: int = 1) -> None:
        """Count ``n`` events of ``stage`` with ``result`` (the labelled child is cached; the stage core counts a
        batch's events per result and calls this once per result, not per event: each ``inc`` takes a lock)."""
        child = self._seen.get((stage, result))
        if child is None:
            child = self._seen[(stage, result)] = self.events.labels(stage, result)
        child.inc(n)
