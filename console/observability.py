"""Metrics (Prometheus) and JSON logs. No phone number is ever a label; numbers in logs are masked."""

import logging
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge

from console.view import Applied
from schemas.alerts import AlertStatus

POST_RESULTS = ("ok", "rejected", "error", "timeout")


class ConsoleMetrics:
    """One set per console (no module-level registry: tests build many)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.alerts = Gauge(
            "bindwatch_console_alerts", "Alerts in the view, by status.", ["status"], registry=self.registry
        )
        for s in AlertStatus:
            self.alerts.labels(s.value)
        self.records = Counter(
            "bindwatch_console_records",
            "Alert records read from Kafka, by what they did to the view (invalid: could not be read).",
            ["result"],
            registry=self.registry,
        )
        for r in [*(a.value for a in Applied), "invalid"]:
            self.records.labels(r)
        self.posts = Counter(
            "bindwatch_console_alertmanager_posts",
            "POST /api/v2/alerts calls (each retry counts), by result.",
            ["result"],
            registry=self.registry,
        )
        for r in POST_RESULTS:
            self.posts.labels(r)
        self.alerts_sent = Counter(
            "bindwatch_console_alertmanager_alerts_sent",
            "Alerts delivered to an Alertmanager (one per alert per Alertmanager).",
            registry=self.registry,
        )
        self.resend_lag = Gauge(
            "bindwatch_console_resend_lag_seconds",
            "How far the last complete resend to the slowest Alertmanager is behind schedule: seconds since it last "
            "took every firing alert, minus one resend interval (0 on schedule; grows while one is unreachable).",
            registry=self.registry,
        )
        self.rebuilt = Gauge(
            "bindwatch_console_view_rebuilt",
            "1 once the view has read the topic to its end at start.",
            registry=self.registry,
        )
        self.rebuild_seconds = Gauge(
            "bindwatch_console_rebuild_seconds", "How long the view took to rebuild at start.", registry=self.registry
        )
        self.alertmanager_up = Gauge(
            "bindwatch_console_alertmanagers_reachable",
            "Configured Alertmanagers whose last call succeeded.",
            registry=self.registry,
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line; ``extra={'fields': {...}}`` adds structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            doc.update(fields)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("httpx").setLevel(logging.WARNING)  # it logs every request URL at INFO
