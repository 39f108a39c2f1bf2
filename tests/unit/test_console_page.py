"""The operators' page without Kafka: access (tokens, cookie, Basic, the failed sign-in limit, headers), the JSON
behind the page (overview, numbers through a fake worker query API on httpx's MockTransport) and the static files."""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from console import ConfigError
from console.access import Access
from console.app import STATIC, create_app
from console.config import ConsoleSettings
from console.records import AlertChange
from console.service import ConsoleState, apply_overview
from schemas import AlertStatus, decode, encode
from tests.support.alerts import alert_record
from tests.support.browser import chromium_path
from tests.support.overview import overview_doc

TOKEN = "s3cret-console-token"
NOW = datetime.now(UTC)


def change(fp: str, **kw: Any) -> AlertChange:
    return decode(AlertChange, alert_record(fp, **kw)[1])


def console(
    handler: Callable[[httpx.Request], httpx.Response] | None = None, **kw: Any
) -> tuple[ConsoleState, TestClient]:
    s = ConsoleSettings(**{"console_tokens": TOKEN, "worker_query_url": "http://worker:6066", **kw})
    state = ConsoleState(s)
    if handler is not None:
        state.http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return state, TestClient(create_app(state), follow_redirects=False)


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"oncall:{password}".encode()).decode()}


# ---- settings ---------------------------------------------------------------------------------------------


def test_the_console_refuses_to_start_without_tokens_unless_told_it_is_insecure() -> None:
    with pytest.raises(ConfigError, match="BINDWATCH_CONSOLE_TOKENS is empty"):
        ConsoleSettings().check()
    ConsoleSettings(console_insecure_no_auth=True).check()
    s = ConsoleSettings(console_tokens=" a , b,,")
    s.check()
    assert s.tokens() == [b"a", b"b"]
    assert "a" not in repr(s.console_tokens)


# ---- access -----------------------------------------------------------------------------------------------


def test_closed_by_default_probes_and_metrics_stay_open() -> None:
    _, client = console()
    for path in ("/healthz", "/metrics", "/signin", "/static/console.css"):
        assert client.get(path).status_code == 200, path
    assert client.get("/readyz").status_code == 503  # open, just not ready: the view is not rebuilt
    r = client.get("/api/overview")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert client.get("/api/openapi.json").status_code == 401
    for page in ("/", "/numbers/85212345678"):
        r = client.get(page)
        assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=/"), page


def test_http_basic_with_a_token_as_password() -> None:
    _, client = console(console_tokens=f"other,{TOKEN}")
    assert client.get("/api/overview", headers=basic(TOKEN)).status_code == 200
    assert client.get("/api/overview", headers=basic("other")).status_code == 200
    assert client.get("/api/overview", headers=basic("wrong")).status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_secure_only_over_https() -> None:
    _, client = console()
    r = client.post("/signin", data={"token": TOKEN, "next": "/numbers/852"})
    assert r.status_code == 303 and r.headers["location"] == "/numbers/852"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert TOKEN not in cookie
    assert client.get("/api/overview").status_code == 200  # the client keeps the cookie
    assert client.get("/").status_code == 200
    r = client.post("/signin", data={"token": TOKEN}, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in r.headers["set-cookie"] and r.headers["location"] == "/"
    r = client.post("/signin", data={"token": TOKEN, "next": "//evil.example/"})
    assert r.headers["location"] == "/"  # never an open redirect
    client.post("/signout")
    client.cookies.clear()
    assert client.get("/api/overview").status_code == 401


def test_a_session_expires_and_dies_with_its_token() -> None:
    clock = [1_000_000.0]
    a = Access([b"t1"], False, 5, clock=lambda: clock[0])
    cookie = a.session(b"t1")
    assert a.session_ok(cookie)
    assert not a.session_ok(cookie.replace(".", ".0"))
    assert not Access([b"t2"], False, 5, clock=lambda: clock[0]).session_ok(cookie)  # token rotated
    clock[0] += 13 * 3600
    assert not a.session_ok(cookie)


def test_a_wrong_token_is_refused_logged_without_the_secret_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    _, client = console(console_max_failed_signins=3)
    caplog.set_level(logging.WARNING, logger="bindwatch.console")
    for _ in range(3):
        r = client.post("/signin", data={"token": "guess-123"})
        assert r.status_code == 303 and r.headers["location"] == "/signin?error=wrong"
    assert "set-cookie" not in r.headers
    refused = [rec for rec in caplog.records if rec.getMessage() == "sign-in refused"]
    assert len(refused) == 3
    assert all("guess-123" not in str(rec.__dict__) for rec in caplog.records)
    r = client.post("/signin", data={"token": TOKEN})  # even the right one waits out the minute
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert client.get("/api/overview", headers=basic("nope")).status_code == 429
    # past the limit the right token is refused too, or the limit would be an oracle for guessing
    assert client.get("/api/overview", headers=basic(TOKEN)).status_code == 429


def test_the_failed_sign_in_limit_forgets_after_a_minute() -> None:
    clock = [0.0]
    a = Access([b"t"], False, 2, clock=lambda: clock[0])
    a.failed("10.0.0.1", "form")
    assert a.blocked("10.0.0.1") == 0
    a.failed("10.0.0.1", "form")
    assert a.blocked("10.0.0.1") == 60 and a.blocked("10.0.0.2") == 0
    clock[0] = 61
    assert a.blocked("10.0.0.1") == 0


def test_security_headers_on_every_answer() -> None:
    _, client = console()
    for path in ("/healthz", "/signin", "/api/overview", "/"):
        h = client.get(path).headers
        csp = h["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp, path
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY", path


def test_insecure_no_auth_opens_the_page() -> None:
    state = ConsoleState(ConsoleSettings(console_insecure_no_auth=True))
    client = TestClient(create_app(state), follow_redirects=False)
    assert client.get("/api/overview").status_code == 200 and client.get("/").status_code == 200


# ---- the JSON ---------------------------------------------------------------------------------------------


def test_api_overview_without_an_overview_yet_says_why() -> None:
    _, client = console()
    body = client.get("/api/overview", headers=basic(TOKEN)).json()
    assert body["overview"] is None and body["overviewMissing"] == "not read yet"
    assert (body["alerts"], body["outage"], body["firingByRule"]) == ([], None, {})


def test_api_overview_firing_alerts_newest_first_filterable_with_the_outage() -> None:
    state, client = console()
    now_ms = int(time.time() * 1000)
    apply_overview(state, encode(overview_doc(now_ms)), "t[0]@0")
    apply_overview(state, encode(overview_doc(now_ms - 60_000, busy=False)), "t[0]@1")  # older: kept out
    apply_overview(state, b'{"schemaVersion": 1}', "t[0]@2")  # unreadable: skipped
    alerts: list[tuple[str, dict[str, Any]]] = [
        ("caller_repeat:a", {"caller": "85211110001"}),
        ("did_hot:b", {"rule": "did_hot", "caller": None, "did": "85299990001"}),
        ("binding_outage:o", {"rule": "binding_outage", "caller": None}),
        ("caller_repeat:r", {"caller": "85211110002", "status": AlertStatus.RESOLVED}),
    ]
    for i, (fp, kw) in enumerate(alerts):
        state.view.apply(change(fp, emitted=NOW + timedelta(minutes=i), **kw))
    body = client.get("/api/overview", headers=basic(TOKEN)).json()
    assert body["overview"]["generatedAt"] == overview_doc(now_ms).model_dump(mode="json")["generatedAt"]
    assert len(body["overview"]["minutes"]) == 60 and body["overview"]["topCallers"]
    assert [a["fingerprint"] for a in body["alerts"]] == ["binding_outage:o", "did_hot:b", "caller_repeat:a"]
    assert body["firingByRule"] == {"binding_outage": 1, "caller_repeat": 1, "did_hot": 1}
    assert body["outage"]["fingerprint"] == "binding_outage:o"
    assert body["alerts"][1]["number"] == "85299990001"
    only = client.get("/api/overview?rule=did_hot", headers=basic(TOKEN)).json()["alerts"]
    assert [a["fingerprint"] for a in only] == ["did_hot:b"]


def worker(answers: dict[str, int | Exception]) -> tuple[list[str], Callable[[httpx.Request], httpx.Response]]:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        kind = request.url.path.split("/")[2]
        answer = answers[kind]
        if isinstance(answer, Exception):
            raise answer
        if answer == 200:
            body = {"caller" if kind == "callers" else "did": request.url.path.split("/")[3], "retainedFailures": 1}
            return httpx.Response(200, json={**body, "failures": [{"at": "x", "requestId": "r1", "other": "o"}]})
        return httpx.Response(answer, json={"error": "not_found"})

    return asked, handler


def test_api_number_normalises_like_the_gateway_and_reads_both_roles() -> None:
    asked, handler = worker({"callers": 200, "dids": 404})
    state, client = console(handler)
    state.view.apply(change("caller_repeat:a", caller="85212345678"))
    state.view.apply(change("caller_repeat:z", caller="85200000000"))
    for raw in ("+852 1234-5678", "0085212345678", "85212345678"):
        r = client.get(f"/api/numbers/{raw}", headers=basic(TOKEN))
        assert r.status_code == 200, raw
        body = r.json()
        assert body["number"] == "85212345678" and body["status"] == "found"
        assert body["asCaller"]["failures"][0]["requestId"] == "r1" and body["asDid"] is None
        assert [a["fingerprint"] for a in body["alerts"]] == ["caller_repeat:a"]
    assert asked[:2] == ["/v1/callers/85212345678", "/v1/dids/85212345678"]


def test_api_number_says_no_recent_failures_apart_from_workers_unreachable() -> None:
    _, handler = worker({"callers": 404, "dids": 404})
    _, client = console(handler)
    r = client.get("/api/numbers/85212345678", headers=basic(TOKEN))
    assert r.status_code == 404 and r.json()["status"] == "no_recent_failures"
    assert r.json()["message"] == "no recent failures for this number"
    for answer in (httpx.ConnectError("refused"), 503):
        _, handler = worker({"callers": answer, "dids": 404})
        _, client = console(handler)
        r = client.get("/api/numbers/85212345678", headers=basic(TOKEN))
        assert r.status_code == 502 and r.json()["status"] == "workers_unreachable", answer
        assert "workers cannot be reached" in r.json()["message"]


def test_the_json_is_in_the_openapi_document() -> None:
    _, client = console()
    paths = client.get("/api/openapi.json", headers=basic(TOKEN)).json()["paths"]
    assert {"/api/overview", "/api/numbers/{number}"} <= set(paths)
    assert "/signin" not in paths and "/" not in paths


def test_without_chromium_the_browser_tests_fail_and_say_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="apt-get install -y chromium"):
        chromium_path(("/nonexistent/chromium", "no-such-chromium-binary"))


# ---- the static page --------------------------------------------------------------------------------------


def test_pages_load_only_their_own_scripts_and_styles() -> None:
    """No inline script or handler (the CSP forbids them), nothing from another origin (no CDN)."""
    html = [p for p in STATIC.iterdir() if p.suffix == ".html"]
    assert {p.name for p in html} == {"index.html", "number.html", "signin.html"}
    for p in STATIC.iterdir():
        text = p.read_text()
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), p.name
        if p.suffix == ".html":
            assert all(re.search(r'src="/static/[a-z]+\.js"', s) for s in re.findall(r"<script[^>]*>", text)), p.name
            assert not re.search(r"\son[a-z]+=", text) and "style=" not in text, p.name
    _, client = console()
    r = client.get("/static/page.js")
    assert r.status_code == 200 and "javascript" in r.headers["content-type"]


def test_the_search_form_submitted_without_the_script_lands_on_the_numbers_page() -> None:
    """Enter pressed before the page's script took the form (or with scripts off): the browser GETs the form's
    action, ``/numbers/?q=...``, and the console redirects as the script would, normalising as the gateway."""
    _, client = console()
    for raw, where in (("+852 1234 5678", "/numbers/85212345678"), ("00852-1234", "/numbers/8521234"), ("  ", "/")):
        r = client.get("/numbers/", params={"q": raw}, headers=basic(TOKEN))
        assert r.status_code == 303 and r.headers["location"] == where, raw
    assert client.get("/numbers/", headers=basic(TOKEN)).headers["location"] == "/"
    r = client.get("/numbers/", params={"q": "a/b?c"}, headers=basic(TOKEN))
    assert r.headers["location"] == "/numbers/a%2Fb%3Fc"  # kept as given, never a path or query of its own
    r = client.get("/numbers/", params={"q": "+85212345678"})  # signed out: to sign-in first, like every page
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=/")
