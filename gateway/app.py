"""The FastAPI application: ``create_app(settings, publisher)`` builds one; ``python -m gateway`` serves it."""

import base64
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from gateway import PublishError
from gateway.auth import client_address, presented_token, source_allowed, token_ok
from gateway.config import GatewaySettings, get_settings
from gateway.connections import ConnectionCollector, GuardedHttpToolsProtocol
from gateway.observability import GatewayMetrics
from gateway.publisher import KafkaPublisher, Publisher
from schemas import BindingFailureEvent, DeadLetterRecord, NxcloudPush, PushValidationError, encode
from schemas.codec import headers as record_headers
from schemas.events import DeadLetterReason
from schemas.numbers import mask_number
from schemas.push import DEMO_PUSH

PUSH_PATH = "/v1/nxcloud/binding-failures"
log = logging.getLogger("bindwatch.gateway")

# The record timestamp is the event time, clamped into [received - MAX_PAST_MS, received + MAX_FUTURE_SKEW_MS]:
# a broker may refuse records too far in the future (message.timestamp.after.max.ms), and a 503 forever would
# lose the push; a record stamped further back than the topic's retention (7 days) is deleted at the broker's
# next retention check, before a worker may have read it, although it was answered 200. NXCLOUD retries for an
# hour, so a real push is never clamped; the event's own occurredAt (what the rules count by) is never changed.
MAX_FUTURE_SKEW_MS = 60_000
MAX_PAST_MS = 24 * 3600 * 1000


@dataclass
class GatewayState:
    settings: GatewaySettings
    publisher: Publisher
    metrics: GatewayMetrics
    tokens: list[bytes]


def _json(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json", headers=headers)


def _error(
    status: int,
    error: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"status": "rejected" if status < 500 else "unavailable", "error": error, "message": message}
    if fields is not None:
        body["fields"] = fields
    return _json(status, body, headers)


def _media_type_ok(content_type: str | None) -> bool:
    if not content_type:
        return False
    mt = content_type.split(";", 1)[0].strip().lower()
    return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))


class BodyTooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _request_id_of(body: bytes) -> str | None:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    rid = doc.get("requestId") if isinstance(doc, dict) else None
    if isinstance(rid, str) and 0 < len(rid) <= 128:
        return rid
    if isinstance(rid, int) and not isinstance(rid, bool):
        return str(rid)
    return None


async def handle_push(request: Request) -> Response:
    st: GatewayState = request.app.state.bindwatch
    started = time.perf_counter()
    fields: dict[str, Any] = {"path": PUSH_PATH}
    try:
        outcome, response = await _process_push(request, st, fields)
    except ClientDisconnect:  # gone before its body arrived (or closed by the request deadline): nothing stored
        outcome, response = "client_disconnected", _error(400, "client_disconnected", "the client went away")
    except Exception as exc:  # a defect of ours: never a 500, never a crash; NXCLOUD retries a 503
        fields["error"] = f"{type(exc).__name__} at {_where(exc)}"
        log.error("unexpected error while handling a push", extra={"fields": dict(fields)})
        outcome, response = (
            "internal_error",
            _error(
                503,
                "internal_error",
                "the push was not stored because of an internal error; retry later",
                headers={"Retry-After": str(st.settings.retry_after_seconds)},
            ),
        )
    elapsed = time.perf_counter() - started
    st.metrics.requests.labels(outcome).inc()
    st.metrics.latency.labels(outcome).observe(elapsed)
    fields.update(outcome=outcome, status=response.status_code, latency_ms=round(elapsed * 1000, 2))
    log.info("push %s", outcome, extra={"fields": fields})
    return response


def _where(exc: BaseException) -> str:
    """File and line of the innermost frame: enough to find the defect, without values that may be personal."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}" if tb else "?"


async def _process_push(request: Request, st: GatewayState, fields: dict[str, Any]) -> tuple[str, Response]:
    s = st.settings
    source = client_address(request, s.trusted_proxies, s.proxy_header)
    fields["source"] = source
    if not source_allowed(source, s.allowed_sources):
        return "forbidden", _error(403, "forbidden_source", "this source address is not allowed to push")
    if st.tokens and not token_ok(presented_token(request), st.tokens):
        return "unauthorized", _error(
            401,
            "unauthorized",
            "missing or wrong token: pass ?token=... or 'Authorization: Bearer ...'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    content_type = request.headers.get("content-type")
    if not _media_type_ok(content_type):
        return "unsupported_media_type", _error(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {content_type!r}",
            [{"loc": "header.content-type", "msg": "must be application/json"}],
        )
    try:
        body = await _read_body(request, s.max_body_bytes)
    except BodyTooLarge:
        return "too_large", _error(
            413,
            "body_too_large",
            f"body exceeds {s.max_body_bytes} bytes",
            [{"loc": "body", "msg": f"larger than {s.max_body_bytes} bytes"}],
        )
    received = datetime.now(UTC)
    try:
        push = NxcloudPush.model_validate_json(body)
    except ValidationError as exc:
        return await _invalid(st, body, PushValidationError.from_pydantic(exc), source, content_type, received, fields)
    event = BindingFailureEvent.from_push(push, s.zone(), received)
    fields.update(requestId=event.requestId)
    if s.mask_numbers_in_logs:
        fields.update(caller=mask_number(event.caller), did=mask_number(event.did))
    else:
        fields.update(caller=event.caller, did=event.did)
    received_ms = int(received.timestamp() * 1000)
    ts = max(min(int(event.occurredAt.timestamp() * 1000), received_ms + MAX_FUTURE_SKEW_MS), received_ms - MAX_PAST_MS)
    try:
        await _publish(
            st,
            s.events_topic,
            "events",
            encode(event),
            event.caller.encode(),
            record_headers(event, event.requestId),
            ts,
        )
    except PublishError as exc:
        return _unavailable(st, exc, fields)
    return "accepted", _json(200, {"status": "accepted", "requestId": event.requestId})


async def _publish(
    st: GatewayState,
    topic: str,
    kind: str,
    value: bytes,
    key: bytes | None,
    headers: list[tuple[str, bytes]],
    ts: int | None,
) -> None:
    t0 = time.perf_counter()
    try:
        await st.publisher.publish(topic, value, key=key, headers=headers, timestamp_ms=ts)
    except PublishError as exc:
        st.metrics.producer_errors.labels(exc.reason).inc()
        raise
    st.metrics.produce_latency.labels(kind).observe(time.perf_counter() - t0)


def _unavailable(st: GatewayState, exc: PublishError, fields: dict[str, Any]) -> tuple[str, Response]:
    fields["error"] = str(exc)
    return "unavailable", _error(
        503,
        "kafka_unavailable",
        f"the push was not stored ({exc}); retry later",
        headers={"Retry-After": str(st.settings.retry_after_seconds)},
    )


async def _invalid(
    st: GatewayState,
    body: bytes,
    err: PushValidationError,
    source: str | None,
    content_type: str | None,
    received: datetime,
    fields: dict[str, Any],
) -> tuple[str, Response]:
    fields["invalid"] = [e["loc"] for e in err.errors]
    if st.settings.invalid_push_mode == "reject":
        return "rejected_invalid", _error(422, "invalid_push", "the body is not a valid NXCLOUD push", err.errors)
    rid = _request_id_of(body)
    record = DeadLetterRecord(
        receivedAt=received,
        sourceAddress=source,
        contentType=content_type,
        requestId=rid,
        reasons=[DeadLetterReason(**e) for e in err.errors],
        bodyBase64=base64.b64encode(body).decode(),
        bodySize=len(body),
    )
    fields["requestId"] = rid
    try:
        await _publish(
            st,
            st.settings.dlq_topic,
            "dlq",
            encode(record),
            None,
            record_headers(record, rid),
            int(received.timestamp() * 1000),
        )
    except PublishError as exc:
        return _unavailable(st, exc, fields)
    st.metrics.dead_lettered.inc()
    return "dead_lettered", _json(
        200,
        {
            "status": "dead-lettered",
            "message": "the body can never become a valid push; it was stored on the dead-letter topic",
            "requestId": rid,
            "fields": err.errors,
        },
    )


async def healthz() -> Response:
    return _json(200, {"status": "alive"})


async def readyz(request: Request) -> Response:
    st: GatewayState = request.app.state.bindwatch
    ready, reason = st.publisher.readiness()
    st.metrics.ready.set(1 if ready else 0)
    return _json(200 if ready else 503, {"status": "ready" if ready else "not ready", "reason": reason})


async def metrics(request: Request) -> Response:
    st: GatewayState = request.app.state.bindwatch
    st.metrics.ready.set(1 if st.publisher.readiness()[0] else 0)
    return Response(generate_latest(st.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    if request.url.path == PUSH_PATH and exc.status_code == 405:
        st: GatewayState = request.app.state.bindwatch
        st.metrics.requests.labels("method_not_allowed").inc()
    return _error(
        exc.status_code, error, f"{exc.detail}: {request.method} {request.url.path}", headers=dict(exc.headers or {})
    )


def _responses() -> dict[int | str, dict[str, Any]]:
    err = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    return {
        200: {
            "description": "Stored durably in Kafka (status 'accepted'), or dead-lettered (status "
            "'dead-lettered') when the body can never become a valid push."
        },
        401: {"description": "Missing or wrong token.", **err},
        403: {"description": "Source address not allowed.", **err},
        413: {"description": "Body over the size limit.", **err},
        415: {"description": "Content-Type is not application/json.", **err},
        422: {"description": "Invalid push (only with BINDWATCH_INVALID_PUSH_MODE=reject).", **err},
        503: {"description": "Not stored: Kafka unavailable. NXCLOUD retries. Has Retry-After.", **err},
    }


def create_app(settings: GatewaySettings | None = None, publisher: Publisher | None = None) -> FastAPI:
    """Build the app. Tests pass settings and a publisher double; production reads the environment."""
    settings = settings or get_settings()
    settings.check()
    if settings.insecure_no_auth and not settings.tokens():
        log.warning(
            "INSECURE: BINDWATCH_INSECURE_NO_AUTH is set and no token is configured: "
            "anyone who can reach this gateway can push. Never run like this in production."
        )
    pub = publisher or KafkaPublisher(
        settings.kafka_bootstrap_servers,
        [settings.events_topic, settings.dlq_topic],
        timeout=settings.produce_timeout_seconds,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        linger_ms=settings.producer_linger_ms,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await pub.start()
        try:
            yield
        finally:
            await pub.stop()

    app = FastAPI(
        title="bindwatch gateway",
        version="1",
        lifespan=lifespan,
        description="Receives NXCLOUD 'binding not exist' pushes and stores them in Kafka.",
    )
    app.state.bindwatch = GatewayState(settings, pub, GatewayMetrics(), settings.tokens())
    app.state.bindwatch.metrics.registry.register(ConnectionCollector(GuardedHttpToolsProtocol.current))
    app.add_api_route(
        PUSH_PATH,
        handle_push,
        methods=["POST"],
        summary="Receive one NXCLOUD binding-failure push",
        responses=_responses(),
        response_class=Response,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/NxcloudPush"},
                        "example": DEMO_PUSH,
                    }
                },
            },
            "parameters": [
                {
                    "name": "token",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Push token (or send 'Authorization: Bearer <token>').",
                }
            ],
        },
    )
    app.add_api_route("/healthz", healthz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["GET"], include_in_schema=False)
    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    app.add_exception_handler(StarletteHTTPException, _http_error)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            comps = doc.setdefault("components", {}).setdefault("schemas", {})
            push_schema = NxcloudPush.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(push_schema.pop("$defs", {}))
            comps["NxcloudPush"] = push_schema
            comps["ErrorBody"] = {
                "type": "object",
                "required": ["status", "error", "message"],
                "properties": {
                    "status": {"type": "string"},
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "fields": {"type": "array", "items": {"type": "object"}},
                },
            }
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def production_app() -> FastAPI:
    """Factory uvicorn calls in every worker process: logging first, then the app from the environment."""
    from gateway.observability import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, mask_numbers=settings.mask_numbers_in_logs)
    return create_app(settings)
