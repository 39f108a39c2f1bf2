"""The console's HTTP side (FastAPI, the gateway's stack): ``/healthz``, ``/readyz``, ``/metrics`` (open), and the
operators' page with the JSON behind it (``/``, ``/numbers/{number}``, ``/api/...``; signed in, ``console.access``).

``create_app(state)`` only reads the state that ``console.service`` keeps; it starts nothing, so a test (and the
deployment checks) can build one without Kafka.
"""

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import orjson
from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from console.access import (
    COOKIE,
    OPEN_PATHS,
    SECURITY_HEADERS,
    SESSION_SECONDS,
    Access,
    basic_password,
    https,
    token_ok,
)
from console.records import AlertChange
from console.service import ConsoleState
from schemas.alerts import AlertStatus
from schemas.numbers import normalise_number

STATIC = Path(__file__).parent / "static"


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


def alert_json(a: AlertChange) -> dict[str, Any]:
    """One alert as the page shows it (the record's fields, plus ``number``: the caller, else the DID)."""
    return {
        "fingerprint": a.fingerprint,
        "rule": a.rule,
        "status": a.status.value,
        "severity": a.severity,
        "caller": a.caller,
        "did": a.did,
        "number": a.caller or a.did,
        "count": a.count,
        "threshold": a.threshold,
        "windowSeconds": a.windowSeconds,
        "since": a.firstOccurredAt.isoformat(),
        "lastOccurredAt": a.lastOccurredAt.isoformat(),
        "emittedAt": a.emittedAt.isoformat(),
        "outage": a.outage,
        "sampleRequestIds": a.sampleRequestIds,
    }


def overview_json(state: ConsoleState, rule: str | None) -> dict[str, Any]:
    """``/api/overview``: the workers' latest overview, and the firing alerts newest first (optionally one rule)."""
    firing = sorted(state.view.firing(), key=lambda a: (a.firstOccurredAt, a.emittedAt), reverse=True)
    rules: dict[str, int] = {}
    for a in firing:
        rules[a.rule] = rules.get(a.rule, 0) + 1
    outages = [a for a in firing if a.rule == "binding_outage"]
    return {
        "overview": state.overview.model_dump(mode="json") if state.overview is not None else None,
        "overviewMissing": state.overview_error,
        "viewRebuilt": state.rebuilt,
        "outage": alert_json(outages[0]) if outages else None,
        "firingByRule": dict(sorted(rules.items())),
        "alerts": [alert_json(a) for a in firing if rule is None or a.rule == rule],
    }


async def _ask_worker(state: ConsoleState, path: str) -> tuple[str, Any]:
    """``("found", body)``, ``("none", None)`` for a 404, or ``("unreachable", why)``."""
    url = (state.settings.worker_url or state.settings.worker_query_url).rstrip("/") + path
    timeout = state.settings.worker_timeout_seconds
    try:
        if state.http is not None:
            r = await state.http.get(url, timeout=timeout)
        else:
            async with httpx.AsyncClient() as client:
                r = await client.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return "unreachable", f"{type(exc).__name__}"
    if r.status_code == 404:
        return "none", None
    if r.status_code != 200:
        return "unreachable", f"HTTP {r.status_code}"
    try:
        return "found", r.json()
    except ValueError:
        return "unreachable", "not JSON"


async def number_json(state: ConsoleState, raw: str) -> tuple[int, dict[str, Any]]:
    """``/api/numbers/{n}``: the workers' record of the number as caller and as DID, and its alerts."""
    number = normalise_number(raw)
    quoted = quote(number, safe="")
    caller, did = await _ask_worker(state, f"/v1/callers/{quoted}"), await _ask_worker(state, f"/v1/dids/{quoted}")
    alerts = sorted((a for a in state.view if number in (a.caller, a.did)), key=lambda a: a.emittedAt, reverse=True)
    body: dict[str, Any] = {
        "number": number,
        "asCaller": caller[1] if caller[0] == "found" else None,
        "asDid": did[1] if did[0] == "found" else None,
        "alerts": [alert_json(a) for a in alerts],
    }
    if "found" in (caller[0], did[0]):
        body["status"] = "found"
        status = 200
    elif "unreachable" in (caller[0], did[0]):
        why = caller[1] if caller[0] == "unreachable" else did[1]
        body["status"] = "workers_unreachable"
        body["message"] = f"the workers cannot be reached at the moment ({why}): try again shortly"
        status = 502
    else:
        body["status"] = "no_recent_failures"
        body["message"] = "no recent failures for this number"
        status = 404
    return status, body


def create_app(state: ConsoleState) -> FastAPI:
    app = FastAPI(
        title="bindwatch console",
        version="1",
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/openapi.json",
        description="The operators' page and the JSON behind it. Sign in with a console token: a session cookie "
        "from `POST /signin`, or HTTP Basic with the token as the password.",
    )
    s = state.settings
    access = Access(s.tokens(), s.console_insecure_no_auth, s.console_max_failed_signins)

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if path in OPEN_PATHS or path.startswith("/static/") or access.signed_in(request):
            response = await call_next(request)
        elif request.headers.get("authorization", "").lower().startswith("basic "):
            source = access.source(request)
            wait = access.blocked(source)  # first: a source past the limit learns nothing, right token or not
            if wait:
                response = _json(429, {"error": "too_many_failed_signins", "message": "try again later"})
                response.headers["Retry-After"] = str(int(wait) + 1)
            elif token_ok(basic_password(request), access.tokens):
                response = await call_next(request)
            else:
                access.failed(source, "basic")
                response = _json(401, {"error": "unauthorized", "message": "wrong token"})
                response.headers["WWW-Authenticate"] = 'Basic realm="bindwatch console"'
        elif path.startswith("/api/"):
            response = _json(401, {"error": "unauthorized", "message": "sign in at /signin or use HTTP Basic"})
            response.headers["WWW-Authenticate"] = 'Basic realm="bindwatch console"'
        else:
            response = RedirectResponse(f"/signin?next={quote(path, safe='/')}", status_code=303)
        response.headers.update(SECURITY_HEADERS)
        if not path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response

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

    @app.get("/api/overview", summary="The workers' latest overview and the firing alerts, newest first")
    async def api_overview(rule: str | None = Query(default=None, description="Only alerts of this rule.")) -> Response:
        return _json(200, overview_json(state, rule))

    @app.get(
        "/api/numbers/{number}",
        summary="One number's retained failures (as caller and as DID) and its alerts",
        responses={404: {"description": "no recent failures"}, 502: {"description": "workers unreachable"}},
    )
    async def api_number(number: str) -> Response:
        status, body = await number_json(state, number)
        return _json(status, body)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "index.html")

    @app.get("/numbers/", include_in_schema=False)
    async def number_search(q: str = "") -> Response:
        """The search form's own target (``action="/numbers/"``): where the page's script has not taken the
        submit yet (Enter pressed while the page loads) or does not run, the browser sends the form here, and the
        number is normalised as the gateway does and redirected to, as the script would."""
        n = normalise_number(q[:64])
        return RedirectResponse(f"/numbers/{quote(n, safe='')}" if n else "/", status_code=303)

    @app.get("/numbers/{number}", include_in_schema=False)
    async def number_page(number: str) -> Response:
        return FileResponse(STATIC / "number.html")

    @app.get("/signin", include_in_schema=False)
    async def signin_form() -> Response:
        return FileResponse(STATIC / "signin.html")

    @app.post("/signin", include_in_schema=False)
    async def signin(request: Request) -> Response:
        source = access.source(request)
        wait = access.blocked(source)
        if wait:
            msg = f"Too many failed sign-ins from this address: try again in {int(wait) + 1} s."
            return Response(msg, status_code=429, media_type="text/plain", headers={"Retry-After": str(int(wait) + 1)})
        form = parse_qs((await request.body())[:8192].decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip().encode()
        nxt = (form.get("next") or ["/"])[0]
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"  # never an open redirect
        if not token_ok(token, access.tokens):
            access.failed(source, "form")
            return RedirectResponse("/signin?error=wrong", status_code=303)
        r: Response = RedirectResponse(nxt, status_code=303)
        r.set_cookie(
            COOKIE,
            access.session(token),
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="strict",
            secure=https(request),
            path="/",
        )
        return r

    @app.post("/signout", include_in_schema=False)
    async def signout() -> Response:
        r = RedirectResponse("/signin", status_code=303)
        r.delete_cookie(COOKIE, path="/")
        return r

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
