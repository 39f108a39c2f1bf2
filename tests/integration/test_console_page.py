"""The operators' page in a real headless Chromium (Debian's package, over the DevTools protocol), against the real
console, gateway and worker as processes on a real broker. Each test saves a screenshot under its ``tmp_path``.

Without Chromium the tests fail and say how to install it (``tests/support/browser.py``); they never skip.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas import Alert, AlertStatus, decode
from schemas.push import DEMO_PUSH
from tests.support import procs
from tests.support.alertmanager import console
from tests.support.alerts import alert_record
from tests.support.browser import Browser
from tests.support.kafka import Names, Rec, consume, produce, setup_topics

pytestmark = pytest.mark.integration
PUSH_TOKEN = "page-push-token"
CONSOLE_TOKEN = "page-console-token-1"
FAST = {
    "BINDWATCH_OUTAGE_PUBLISH_SECONDS": "1",
    "BINDWATCH_OVERVIEW_PUBLISH_SECONDS": "1",
    "BINDWATCH_COMMIT_INTERVAL_SECONDS": "0.5",
    "BINDWATCH_TICK_SECONDS": "0.5",
    "BINDWATCH_STORE": "memory://",
}


@dataclass
class Stack:
    bootstrap: str
    names: Names
    gateway: procs.Service
    worker: procs.Service
    console: procs.Service

    def push(self, caller: str, did: str, request_id: str, at: datetime) -> None:
        body: dict[str, Any] = copy.deepcopy(DEMO_PUSH)
        body["requestId"] = request_id
        body["data"]["requestParams"] = {"caller": caller, "did": did}
        body["data"]["occurrenceTime"] = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        url = procs.url(self.gateway, f"/v1/nxcloud/binding-failures?token={PUSH_TOKEN}")
        r = httpx.post(url, json=body, timeout=10)
        assert r.status_code == 200, r.text

    def alerts(self, done: Any, timeout: float) -> list[Alert]:
        recs = consume(self.bootstrap, f"{self.names.tag}.alerts", lambda r: done(_alerts(r)), timeout=timeout)
        return _alerts(recs)


def _alerts(recs: list[Rec]) -> list[Alert]:
    out = []
    for r in recs:
        try:
            out.append(decode(Alert, r.value or b""))
        except ValueError:
            continue  # a binding_outage record written by a test (a rule this schema version may not know)
    return out


@pytest.fixture(scope="module")
def stack(broker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bootstrap = broker.bootstrap
    logdir = tmp_path_factory.mktemp("page")
    names = Names.new("page")
    setup_topics(bootstrap, names, partitions=2)
    env = names.env(bootstrap, partitions=2)
    gw = procs.gateway({**env, "BINDWATCH_PUSH_TOKENS": PUSH_TOKEN, "BINDWATCH_OCCURRENCE_TIME_ZONE": "+00:00"}, logdir)
    wk = procs.worker({**env, **FAST}, logdir)
    con = console(
        {
            **env,
            "BINDWATCH_CONSOLE_TOKENS": CONSOLE_TOKEN,
            "BINDWATCH_CONSOLE_MAX_FAILED_SIGNINS": "50",
            "BINDWATCH_WORKER_QUERY_URL": procs.url(wk, "").rstrip("/"),
        },
        logdir,
    )
    with procs.running(gw, wk, con, timeout=120):
        yield Stack(bootstrap, names, gw, wk, con)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium").start()
    try:
        yield b
    finally:
        b.close()


def sign_in(b: Browser, stack: Stack, token: str, path: str = "/") -> None:
    b.goto(procs.url(stack.console, path))
    b.wait_for("location.pathname === '/signin'", 15, "the page to send us to the sign-in form")
    b.type("#token", token)
    b.click("#signin")


def test_a_wrong_password_is_refused(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    sign_in(browser, stack, "not-the-token")
    browser.wait_for("!document.getElementById('error').hidden", 15, "the refusal to show")
    assert "Wrong token" in browser.text("#error")
    assert browser.eval("location.pathname") == "/signin"
    assert not [c for c in browser.cookies() if c["name"] == "bindwatch_console"]
    browser.screenshot(tmp_path / "wrong-password.png")
    r = httpx.get(procs.url(stack.console, "/api/overview"), timeout=10)
    assert r.status_code == 401
    assert "not-the-token" not in stack.console.log_text()
    assert "sign-in refused" in stack.console.log_text()


def test_sign_in_then_an_alert_pushed_through_the_gateway_appears_without_a_reload(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    sign_in(browser, stack, CONSOLE_TOKEN)
    browser.wait_for("location.pathname === '/' && !!document.querySelector('#alerts tbody tr')", 20, "the page")
    [cookie] = [c for c in browser.cookies() if c["name"] == "bindwatch_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and CONSOLE_TOKEN not in cookie["value"]
    browser.eval("window.__sameDocument = 'yes'")  # gone if the page reloads
    caller = "8526" + str(uuid.uuid4().int)[:7]
    now = datetime.now(UTC)
    for i in range(3):
        stack.push(caller, "85299990000", f"page-{caller}-{i}", now - timedelta(seconds=30 - i))

    def fired(alerts: list[Alert]) -> bool:
        return any(a.caller == caller and a.status is AlertStatus.FIRING for a in alerts)

    assert fired(stack.alerts(fired, timeout=90)), "the worker emitted no alert for the pushes"
    t0 = time.monotonic()
    shown = f"+852 {caller[3:7]} {caller[7:]}"
    browser.wait_for(
        f"document.querySelector('#alerts tbody').innerText.includes({shown!r})", 10, "the alert on the page"
    )
    took = time.monotonic() - t0
    assert browser.eval("window.__sameDocument") == "yes", "the page reloaded"
    # the chart is drawn from the workers' overview (published every second here), in the page's own SVG
    browser.wait_for("document.querySelectorAll('#chart svg rect').length === 60", 30, "the 60-minute chart")
    browser.screenshot(tmp_path / "page.png")
    print(f"alert on the page {took:.1f}s after it was on the topic")


def test_search_finds_a_number_entered_with_plus_and_its_page_shows_each_failure(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    caller = "8526" + str(uuid.uuid4().int)[:7]
    now = datetime.now(UTC)
    sent = [f"num-{caller}-{i}" for i in range(4)]
    for i, rid in enumerate(sent):
        stack.push(caller, f"8529888000{i}", rid, now - timedelta(minutes=4 - i))
    sign_in(browser, stack, CONSOLE_TOKEN)
    browser.wait_for("location.pathname === '/'", 20, "the page after sign-in")
    browser.type("#q", f"+852 {caller[3:7]} {caller[7:]}")
    browser.press_enter()
    browser.wait_for(f"location.pathname === '/numbers/{caller}'", 15, "the number's page")
    rows = browser.wait_for(
        f"(() => {{ const t = document.querySelector('#failures tbody').innerText;"
        f" return {sent!r}.every((r) => t.includes(r)) ? document.querySelectorAll('#failures tr.failure').length"
        f" : 0; }})()",
        60,
        "every failure sent on the number's page",
    )
    assert rows == len(sent)
    assert browser.text("#title") == f"+852 {caller[3:7]} {caller[7:]}"
    browser.screenshot(tmp_path / "number.png")
    # The same search without the page's script (``form.submit()`` skips its submit handler, as a press of Enter
    # before the script has loaded does): the real browser GETs the form's action and the console redirects.
    browser.type("#q", f"00852-{caller[3:]}")
    browser.eval("document.getElementById('search').submit(), true")
    browser.wait_for(
        f"location.pathname === '/numbers/{caller}' && location.search === ''", 15, "the page by the form's own GET"
    )
    browser.goto(procs.url(stack.console, "/numbers/0085200000001"))
    browser.wait_for(
        "document.getElementById('status').innerText.includes('no recent failures')", 15, "the no-failures message"
    )


def test_the_outage_banner_appears_and_goes_away_when_the_outage_resolves(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    sign_in(browser, stack, CONSOLE_TOKEN)
    browser.wait_for("location.pathname === '/'", 20, "the page after sign-in")
    fp = f"binding_outage:{uuid.uuid4().hex[:20]}"
    topic = f"{stack.names.tag}.alerts"
    now = datetime.now(UTC)
    produce(stack.bootstrap, topic, [alert_record(fp, rule="binding_outage", caller=None, count=420, emitted=now)])
    browser.wait_for("!document.getElementById('outage').hidden", 15, "the outage banner")
    assert "Binding outage" in browser.text("#outage")
    browser.screenshot(tmp_path / "outage.png")
    resolved = alert_record(
        fp, rule="binding_outage", caller=None, status=AlertStatus.RESOLVED, emitted=now + timedelta(seconds=1)
    )
    produce(stack.bootstrap, topic, [resolved])
    browser.wait_for("document.getElementById('outage').hidden", 15, "the banner to go away")
    browser.screenshot(tmp_path / "outage-resolved.png")


def test_the_page_fits_a_phone_and_follows_dark_mode(stack: Stack, browser: Browser, tmp_path: Path) -> None:
    sign_in(browser, stack, CONSOLE_TOKEN)
    browser.wait_for("location.pathname === '/' && !!document.querySelector('#alerts tbody tr')", 20, "the page")
    light = browser.eval("getComputedStyle(document.body).backgroundColor")
    browser.viewport(390, 844, mobile=True)
    browser.set_dark(True)
    browser.wait_for(f"getComputedStyle(document.body).backgroundColor !== {light!r}", 10, "the dark colours")
    # nothing wider than the phone but the tables, which scroll inside their own box
    assert browser.eval("document.documentElement.scrollWidth") <= 390
    browser.screenshot(tmp_path / "phone-dark.png")
