"""Metrics (Prometheus) and structured logs. No phone number or token is ever a label or logged in clear."""

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schemas import logs

OUTCOMES = (
    "accepted",
    "dead_lettered",
    "rejected_invalid",
    "unauthorized",
    "forbidden",
    "too_large",
    "unsupported_media_type",
    "method_not_allowed",
    "not_found",
    "unavailable",
    "internal_error",
    "client_disconnected",
)


class GatewayMetrics:
    """One set per app instance (no module-level registry: tests build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "bindwatch_gateway_requests",
            "Push requests by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        for o in OUTCOMES:
            self.requests.labels(o)
        self.latency = Histogram(
            "bindwatch_gateway_request_duration_seconds",
            "Time from request start to response, by outcome.",
            ["outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.produce_latency = Histogram(
            "bindwatch_gateway_produce_duration_seconds",
            "Time Kafka took to acknowledge a write (acks=all), by topic kind.",
            ["topic"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "bindwatch_gateway_dead_lettered", "Pushes written to the dead-letter topic.", registry=self.registry
        )
        self.producer_errors = Counter(
            "bindwatch_gateway_producer_errors",
            "Writes Kafka did not acknowledge, by reason.",
            ["reason"],
            registry=self.registry,
        )
        for r in ("timeout", "kafka_error", "not_connected"):
            self.producer_errors.labels(r)
        self.ready = Gauge(
            "bindwatch_gateway_ready", "1 when the producer is connected and topics are known.", registry=self.registry
        )


def configure_logging(level: str, *, mask_numbers: bool = True) -> None:
    """JSON lines on stdout for this process (``schemas.logs``): ours and uvicorn's, which propagate to the root
    logger since ``python -m gateway`` gives uvicorn no logging config of its own."""
    logs.configure(level, mask_numbers=mask_numbers)
    # uvicorn's access log prints the query string, which carries the push token: never enable it.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("uvicorn.access").propagate = False
