"""The console's HTTP side (FastAPI, the gateway's stack): ``/healthz``, ``/readyz``, ``/metrics``.

``create_app(state)`` only reads the state that ``console.service`` keeps; it starts nothing, so a test (and the
deployment checks) can build one without Kafka.
"""

from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.service import ConsoleState
from schemas.alerts import AlertStatus


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


def readiness(state: ConsoleState) -> tuple[bool, dict[str, Any]]:
    """Ready: the view is rebuilt and, when Alertmanagers are configured, at least one answered its last call."""
    body: dict[str, Any] = {
        "viewRebuilt": state.rebuilt,
        "alerts": {s.value: state.view.count(s) for s in AlertStatus},
    }
    if state.kafka_error:
        body["kafka"] = state.kafka_error
    ams = state.alertmanagers
    if ams is None:
        body["alertmanager"] = "not configured (BINDWATCH_ALERTMANAGER_URLS is empty): alerts are not forwarded"
        return state.rebuilt, body
    body["alertmanagers"] = [
        {"url": url, "reachable": ams.reachable[url], "pending": ams.pending(url)} for url in ams.urls
    ]
    return state.rebuilt and any(ams.reachable.values()), body


def create_app(state: ConsoleState) -> FastAPI:
    app = FastAPI(title="bindwatch console", version="1", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> Response:
        return _json(200, {"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        ready, body = readiness(state)
        body["status"] = "ready" if ready else "not ready"
        return _json(200 if ready else 503, body)

    @app.get("/metrics")
    async def metrics() -> Response:
        state.refresh_gauges()
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
