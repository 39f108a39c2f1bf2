"""Whom the REAL gateway process believes about the client address (issue 12, item 1).

uvicorn rewrites ``request.client`` from proxy headers before the app sees it; the in-process test client has no
such layer, so these run ``python -m gateway`` and connect from chosen loopback source addresses (127.0.0.2,
127.0.0.3: all of 127/8 is local on Linux) to play "a trusted proxy" and "somebody else".
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from schemas.push import DEMO_PUSH
from tests.support import procs
from tests.support.kafka import Names, setup_topics

pytestmark = pytest.mark.integration
TOKEN = "proxy-trust-token"
PROXY = "127.0.0.2"  # plays the trusted reverse proxy
STRANGER = "127.0.0.3"  # an untrusted peer that is itself allowed to connect


def _post(url: str, source: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as c:
        body = {**DEMO_PUSH, "requestId": f"proxy-{source}-{len(headers)}"}
        return c.post(url, params={"token": TOKEN}, json=body, headers=headers)


def _refused(url: str, source: str, headers: dict[str, str]) -> str:
    """'403' or 'closed': anything but a 200 means the forged address was not believed."""
    try:
        r = _post(url, source, headers)
    except httpx.TransportError:
        return "closed"
    return str(r.status_code) if r.status_code != 200 else f"200 {r.text}"


@pytest.fixture
def gateway_env(bootstrap: str) -> dict[str, str]:
    names = Names.new("proxy")
    setup_topics(bootstrap, names)
    return {**names.env(bootstrap), "BINDWATCH_PUSH_TOKENS": TOKEN}


@pytest.fixture
def no_proxy_gateway(gateway_env: dict[str, str], logdir: Path) -> Iterator[procs.Service]:
    """The issue's reproduction: an allowlist, no trusted proxy."""
    gw = procs.gateway({**gateway_env, "BINDWATCH_ALLOWED_SOURCES": f"10.0.0.0/8,{STRANGER}/32"}, logdir)
    # readiness is polled from 127.0.0.1, which this allowlist excludes: poll from an allowed source instead
    gw.ready_source = STRANGER
    gw.start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Forwarded-For": "10.1.1.1"},
        {"Forwarded": "for=10.1.1.1"},
        {"X-Real-IP": "10.1.1.1"},
    ],
    ids=["x-forwarded-for", "forwarded", "x-real-ip"],
)
def test_a_forged_proxy_header_from_loopback_is_not_believed(
    no_proxy_gateway: procs.Service, headers: dict[str, str]
) -> None:
    url = procs.url(no_proxy_gateway, "/v1/nxcloud/binding-failures")
    # 127.0.0.1 is not allowed: claiming to forward for an allowed address must not get it in
    assert _refused(url, "127.0.0.1", headers) in {"403", "closed"}
    # the same claim from an allowed, untrusted peer is judged by the peer's own address, not the header
    r = _post(url, STRANGER, {"X-Forwarded-For": "192.0.2.9", "Forwarded": "for=192.0.2.9"})
    assert r.status_code == 200, r.text


@pytest.fixture
def proxied_gateway(gateway_env: dict[str, str], logdir: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    header = request.param
    gw = procs.gateway(
        {
            **gateway_env,
            "BINDWATCH_ALLOWED_SOURCES": "10.0.0.0/8",
            "BINDWATCH_TRUSTED_PROXIES": f"{PROXY}/32,127.0.0.4/32",
            "BINDWATCH_PROXY_HEADER": header,
        },
        logdir,
        name=f"gateway-{header}",
    )
    gw.ready_source = PROXY
    gw.start()
    try:
        yield procs.url(gw, "/v1/nxcloud/binding-failures")
    finally:
        gw.stop()


@pytest.mark.parametrize("proxied_gateway", ["x-forwarded-for"], indirect=True)
def test_x_forwarded_for_is_honoured_from_a_configured_proxy_only(proxied_gateway: str) -> None:
    url = proxied_gateway
    assert _post(url, PROXY, {"X-Forwarded-For": "10.1.1.1"}).status_code == 200
    # the proxy appends the real peer: the rightmost untrusted hop is the client, whatever the client prepended
    assert _post(url, PROXY, {"X-Forwarded-For": "10.9.9.9, 192.0.2.7"}).status_code == 403
    assert _post(url, PROXY, {"X-Forwarded-For": "192.0.2.7, 10.1.1.1, 127.0.0.4"}).status_code == 200
    # a Forwarded header is not what this proxy writes: it is ignored, the peer (the proxy) is not allowed
    assert _post(url, PROXY, {"Forwarded": "for=10.1.1.1"}).status_code == 403
    # an untrusted peer cannot use the header at all
    assert _refused(url, STRANGER, {"X-Forwarded-For": "10.1.1.1"}) in {"403", "closed"}


@pytest.mark.parametrize("proxied_gateway", ["x-forwarded-for"], indirect=True)
def test_a_second_x_forwarded_for_line_cannot_hide_the_proxys_hop(proxied_gateway: str) -> None:
    """A proxy that adds its own header line (instead of appending to the client's) must not let the client's
    forged first line win: every line counts, in order."""
    port = int(proxied_gateway.split(":")[2].split("/")[0])
    body = b'{"code":10013,"requestId":"two-lines","data":{"requestParams":{"caller":"1","did":"2"}}}'
    raw = (
        f"POST /v1/nxcloud/binding-failures?token={TOKEN} HTTP/1.1\r\nHost: x\r\n"
        "X-Forwarded-For: 10.1.1.1\r\nX-Forwarded-For: 192.0.2.8\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(PROXY, 0)) as s:
        s.sendall(raw)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]


@pytest.mark.parametrize("proxied_gateway", ["forwarded"], indirect=True)
def test_forwarded_is_honoured_from_a_configured_proxy_only(proxied_gateway: str) -> None:
    url = proxied_gateway
    assert _post(url, PROXY, {"Forwarded": "for=10.1.1.1;proto=https"}).status_code == 200
    assert _post(url, PROXY, {"Forwarded": 'for="10.1.1.1:4711"'}).status_code == 200
    assert _post(url, PROXY, {"Forwarded": "for=10.9.9.9, for=192.0.2.7"}).status_code == 403
    assert _post(url, PROXY, {"Forwarded": 'for="[2001:db8::1]"'}).status_code == 403
    assert _post(url, PROXY, {"Forwarded": "for=unknown"}).status_code == 403
    # with Forwarded configured, X-Forwarded-For is not believed
    assert _post(url, PROXY, {"X-Forwarded-For": "10.1.1.1"}).status_code == 403
    assert _refused(url, STRANGER, {"Forwarded": "for=10.1.1.1"}) in {"403", "closed"}
