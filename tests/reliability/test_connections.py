"""Connection abuse against the REAL gateway process (issue 19): slow and silent clients, more connections than
the limit, and sources outside the allowlist, while one valid push a second must keep getting 200.

Each test starts its own gateway (short deadlines and low limits, so the test stays short) on the rig's broker;
all traffic is on 127.0.0.1 (and 127.0.0.2 for a second source address), bounded in count and time. Figures go
to the reliability report's "Connection abuse" table.
"""

from __future__ import annotations

import asyncio
import re
import socket
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest

from schemas.push import DEMO_PUSH
from tests.reliability.conftest import TOKEN, Rig
from tests.support import procs

pytestmark = pytest.mark.integration
PUSH_PATH = "/v1/nxcloud/binding-failures"
REQUEST_DEADLINE = 4.0
IDLE_DEADLINE = 2.0
SLACK = 2.0  # the bound: closed within deadline + 2 s


@dataclass
class Held:
    """One abusive connection: when it sent its first byte, when the server closed it, what it answered."""

    kind: str
    first_byte: float = 0.0
    closed: float | None = None
    answer: bytes = b""


@dataclass
class Pushes:
    statuses: list[int] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)


def _gateway(rig: Rig, name: str, extra: dict[str, str], ready_source: str | None = None) -> procs.Service:
    gw = procs.gateway({**rig.env, **extra}, rig.logdir, name=name)
    gw.ready_source = ready_source
    return gw.start()


def _port(gw: procs.Service) -> int:
    return int(gw.ready_url.split(":")[2].split("/")[0])


def _metric(text: str, name: str, labels: str = "") -> float:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m is not None, f"{name}{labels} missing from /metrics"
    return float(m.group(1))


async def _hold(port: int, held: Held, first: bytes, drip: bytes | None, until: float) -> None:
    """Connect, send ``first`` (nothing if empty), then ``drip`` once a second, until the server closes."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        held.closed = held.first_byte = time.monotonic()
        return
    held.first_byte = time.monotonic()
    try:
        if first:
            writer.write(first)
        while time.monotonic() < until:
            try:
                chunk = await asyncio.wait_for(reader.read(4096), timeout=1.0)
            except TimeoutError:
                if drip is not None:
                    writer.write(drip)
                continue
            if not chunk:
                break
            held.answer += chunk
        else:
            return  # still open at the end: closed stays None
        held.closed = time.monotonic()
    except (ConnectionResetError, BrokenPipeError):
        held.closed = time.monotonic()
    finally:
        writer.close()


async def _push_every_second(url: str, until: float, out: Pushes, source: str | None = None) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        i = 0
        while time.monotonic() < until:
            i += 1
            body = {**DEMO_PUSH, "requestId": f"abuse-{time.time_ns()}-{i}"}
            t0 = time.monotonic()
            try:
                r = await client.post(url, params={"token": TOKEN}, json=body)
                out.statuses.append(r.status_code)
            except httpx.HTTPError:
                out.statuses.append(0)
            out.latencies_ms.append((time.monotonic() - t0) * 1000)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - t0)))


def _row(rig: Rig, scenario: str, held: list[Held], deadline: float, pushes: Pushes, **extra: object) -> None:
    closed_after = [h.closed - h.first_byte for h in held if h.closed is not None]
    rig.results.append(
        {
            "kind": "connection abuse",
            "scenario": scenario,
            "connections": len(held),
            "deadline_s": deadline,
            "closed": len(closed_after),
            "closed_after_max_s": round(max(closed_after), 2) if closed_after else None,
            "pushes": len(pushes.statuses),
            "pushes_200": pushes.statuses.count(200),
            "push_p50_ms": round(statistics.median(pushes.latencies_ms), 1) if pushes.latencies_ms else None,
            "push_max_ms": round(max(pushes.latencies_ms), 1) if pushes.latencies_ms else None,
            **extra,
        }
    )


@pytest.fixture
def deadline_gateway(rig: Rig) -> Iterator[procs.Service]:
    gw = _gateway(
        rig,
        "gw-deadlines",
        {
            "BINDWATCH_REQUEST_TIMEOUT_SECONDS": str(REQUEST_DEADLINE),
            "BINDWATCH_IDLE_CONNECTION_TIMEOUT_SECONDS": str(IDLE_DEADLINE),
            "BINDWATCH_CONNECTION_SUMMARY_SECONDS": "2",
        },
    )
    try:
        yield gw
    finally:
        gw.stop()


def test_slow_and_silent_clients_are_closed_by_the_deadlines_while_pushes_get_through(
    rig: Rig, deadline_gateway: procs.Service
) -> None:
    port = _port(deadline_gateway)
    url = procs.url(deadline_gateway, PUSH_PATH)
    head = f"POST {PUSH_PATH}?token={TOKEN} HTTP/1.1\r\nHost: x\r\n".encode()
    full_head = head + b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    slow_header = [Held("slow header") for _ in range(1000)]
    slow_body = [Held("slow body") for _ in range(1000)]
    silent = [Held("silent") for _ in range(500)]
    pushes = Pushes()

    async def attack() -> None:
        until = time.monotonic() + REQUEST_DEADLINE + 25
        push_task = asyncio.create_task(_push_every_second(url, time.monotonic() + REQUEST_DEADLINE + 8, pushes))
        tasks: list[asyncio.Task[None]] = []
        for group, first, drip in (
            (slow_header, head, b"X-Slow: 1\r\n"),
            (slow_body, full_head + b"{", b" "),
            (silent, b"", None),
        ):
            for i, h in enumerate(group):
                tasks.append(asyncio.create_task(_hold(port, h, first, drip, until)))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)  # stay inside the listen backlog
        await asyncio.gather(*tasks)
        await push_task

    t0 = time.monotonic()
    asyncio.run(asyncio.wait_for(attack(), timeout=90))
    elapsed = time.monotonic() - t0

    for group, deadline in ((slow_header, REQUEST_DEADLINE), (slow_body, REQUEST_DEADLINE), (silent, IDLE_DEADLINE)):
        open_left = [h for h in group if h.closed is None]
        assert not open_left, f"{len(open_left)} {group[0].kind} connections were never closed"
        late = [
            h.closed - h.first_byte
            for h in group
            if h.closed is not None and h.closed - h.first_byte > deadline + SLACK
        ]
        assert not late, f"{len(late)} {group[0].kind} connections closed late, worst {max(late):.2f}s"
    for h in slow_header + slow_body:  # a response was still possible: 408 with a JSON body
        assert h.answer.startswith(b"HTTP/1.1 408 "), h.answer[:120]
        assert b'"error":"request_timeout"' in h.answer
    assert all(not h.answer for h in silent)
    assert pushes.statuses and set(pushes.statuses) == {200}, pushes.statuses

    metrics = httpx.get(procs.url(deadline_gateway, "/metrics"), timeout=10).text
    by_request = _metric(metrics, "bindwatch_gateway_connections_closed_by_deadline_total", '{deadline="request"}')
    by_idle = _metric(metrics, "bindwatch_gateway_connections_closed_by_deadline_total", '{deadline="idle"}')
    assert by_request >= 2000 and by_idle >= 500, (by_request, by_idle)
    time.sleep(2.5)  # one summary interval: the summary line, not a line per connection
    summaries = [
        orjson.loads(line)
        for line in deadline_gateway.log_text().splitlines()
        if line.startswith("{") and '"connection summary"' in line
    ]
    assert summaries, "no connection summary line in the gateway log"
    assert sum(int(s["closed_request"]) for s in summaries) >= 2000
    assert len(summaries) < elapsed / 2 + 3, "summaries must come once per interval"
    for group, deadline in ((slow_header, REQUEST_DEADLINE), (slow_body, REQUEST_DEADLINE), (silent, IDLE_DEADLINE)):
        _row(rig, f"{len(group)} {group[0].kind} connections", group, deadline, pushes)


def test_more_idle_connections_than_the_limit_leave_valid_pushes_answered(rig: Rig) -> None:
    limit = 200
    gw = _gateway(
        rig,
        "gw-limit",
        {
            "BINDWATCH_MAX_CONNECTIONS": str(limit),
            "BINDWATCH_MAX_CONNECTIONS_PER_SOURCE": str(limit),
            "BINDWATCH_IDLE_CONNECTION_TIMEOUT_SECONDS": "120",  # the idle ones stay until the limit evicts them
        },
    )
    held = [Held("idle") for _ in range(3 * limit)]
    pushes = Pushes()
    try:
        url = procs.url(gw, PUSH_PATH)

        async def attack() -> None:
            until = time.monotonic() + 20
            tasks = []
            for i, h in enumerate(held):
                tasks.append(asyncio.create_task(_hold(_port(gw), h, b"", None, until)))
                if i % 100 == 99:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1.0)  # every slot is taken by now
            await _push_every_second(url, time.monotonic() + 8, pushes)
            await asyncio.gather(*tasks)

        asyncio.run(asyncio.wait_for(attack(), timeout=60))
        metrics = httpx.get(procs.url(gw, "/metrics"), timeout=10).text
    finally:
        gw.stop()
    assert pushes.statuses and set(pushes.statuses) == {200}, pushes.statuses
    # one source holds every connection here, so its per-source limit (equal to the process limit) acts first
    evicted = sum(
        _metric(metrics, "bindwatch_gateway_connections_evicted_total", f'{{limit="{lim}"}}')
        for lim in ("process", "per_source")
    )
    assert evicted >= 2 * limit, evicted
    assert _metric(metrics, "bindwatch_gateway_connections_limit", '{scope="process"}') == limit
    closed = sum(1 for h in held if h.closed is not None)
    assert closed >= 2 * limit, f"only {closed} of {len(held)} idle connections were closed to make room"
    _row(rig, f"{len(held)} idle connections, limit {limit}", held, 0, pushes, evicted=int(evicted))


def test_a_source_outside_the_allowlist_is_closed_unread(rig: Rig) -> None:
    gw = _gateway(rig, "gw-allowlist", {"BINDWATCH_ALLOWED_SOURCES": "127.0.0.2/32"}, ready_source="127.0.0.2")
    try:
        port = _port(gw)
        body = orjson.dumps({**DEMO_PUSH, "requestId": "outside-1"})
        request = (
            f"POST {PUSH_PATH}?token={TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        waits = []
        for _ in range(20):
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                answer = b""
                try:
                    s.sendall(request)
                    answer = s.recv(4096)
                except (ConnectionResetError, BrokenPipeError):
                    pass
            waits.append(time.monotonic() - t0)
            assert answer == b"", f"a refused source got an answer: {answer[:80]!r}"
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(transport=transport, timeout=10) as c:
            ok = c.post(procs.url(gw, PUSH_PATH), params={"token": TOKEN}, json={**DEMO_PUSH, "requestId": "in-1"})
            metrics = c.get(procs.url(gw, "/metrics")).text
    finally:
        gw.stop()
    assert ok.status_code == 200, ok.text
    assert _metric(metrics, "bindwatch_gateway_connections_dropped_by_allowlist_total") == 20
    assert max(waits) < 1.0, waits
    rig.results.append(
        {
            "kind": "connection abuse",
            "scenario": "20 connections from a source outside the allowlist",
            "connections": 20,
            "deadline_s": 0,
            "closed": 20,
            "closed_after_max_s": round(max(waits), 3),
            "pushes": 1,
            "pushes_200": 1,
            "push_p50_ms": None,
            "push_max_ms": None,
        }
    )
