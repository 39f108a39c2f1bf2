"""The gateway's connection book (admission, limits, eviction order) and proxy-header parsing, without sockets.

The same rules are exercised against the real gateway process in tests/integration/test_gateway_connections.py
and test_gateway_proxy_trust.py; these tables pin the decisions themselves.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import pytest

from gateway.auth import forwarded_hops
from gateway.config import GatewaySettings
from gateway.connections import FD_RESERVE, ConnectionGuard, ConnectionLimits


@dataclass(eq=False)
class FakeConn:
    name: str
    evicted: bool = field(default=False)

    def evict(self) -> None:
        self.evicted = True


def limits(total: int = 4, per_source: int = 3, allowed: str = "", proxies: str = "") -> ConnectionLimits:
    nets = [ipaddress.ip_network(n) for n in allowed.split(",") if n]
    prox = [ipaddress.ip_network(n) for n in proxies.split(",") if n]
    return ConnectionLimits(tuple(nets), tuple(prox), total, per_source, 5.0, 10.0)


def test_sources_outside_the_allowlist_are_dropped_unless_they_are_a_trusted_proxy() -> None:
    g = ConnectionGuard(limits(allowed="10.0.0.0/8", proxies="192.0.2.1/32"))
    assert g.admit(FakeConn("a"), "127.0.0.1") == "allowlist"
    assert g.admit(FakeConn("b"), None) == "allowlist"
    assert g.admit(FakeConn("c"), "10.1.2.3") is None
    assert g.admit(FakeConn("d"), "192.0.2.1") is None  # the proxy connects; its clients are judged per request
    assert (g.counts.dropped_allowlist, g.open_count) == (2, 2)


def test_no_allowlist_admits_everyone() -> None:
    g = ConnectionGuard(limits())
    assert g.admit(FakeConn("a"), "198.51.100.1") is None


def test_over_the_process_limit_the_oldest_evictable_connection_makes_room() -> None:
    g = ConnectionGuard(limits(total=3, per_source=3))
    a, b, c, d = (FakeConn(n) for n in "abcd")
    for conn, peer in ((a, "10.0.0.1"), (b, "10.0.0.2"), (c, "10.0.0.3")):
        assert g.admit(conn, peer) is None
    g.mark(a, evictable=False)  # a is busy with a complete request: never evicted
    assert g.admit(d, "10.0.0.4") is None
    assert (a.evicted, b.evicted, c.evicted) == (False, True, False)
    assert g.counts.evicted_process == 1 and g.open_count == 3


def test_a_connection_that_becomes_idle_again_is_the_youngest() -> None:
    g = ConnectionGuard(limits(total=2, per_source=2))
    a, b, c = FakeConn("a"), FakeConn("b"), FakeConn("c")
    g.admit(a, "10.0.0.1")
    g.admit(b, "10.0.0.2")
    g.mark(a, evictable=False)
    g.mark(a, evictable=True)  # a answered and went back to keep-alive: b is now the oldest idle one
    g.admit(c, "10.0.0.3")
    assert (a.evicted, b.evicted) == (False, True)


def test_when_every_connection_is_busy_the_new_one_is_refused() -> None:
    g = ConnectionGuard(limits(total=2, per_source=2))
    a, b = FakeConn("a"), FakeConn("b")
    g.admit(a, "10.0.0.1")
    g.admit(b, "10.0.0.2")
    g.mark(a, evictable=False)
    g.mark(b, evictable=False)
    assert g.admit(FakeConn("c"), "10.0.0.3") == "process_limit"
    assert g.counts.refused_process == 1 and not a.evicted and not b.evicted


def test_per_source_limit_evicts_that_sources_oldest_and_spares_others() -> None:
    g = ConnectionGuard(limits(total=10, per_source=2))
    other = FakeConn("other")
    g.admit(other, "10.0.0.9")
    s1, s2, s3 = FakeConn("s1"), FakeConn("s2"), FakeConn("s3")
    g.admit(s1, "10.0.0.1")
    g.admit(s2, "10.0.0.1")
    assert g.admit(s3, "10.0.0.1") is None
    assert (s1.evicted, s2.evicted, other.evicted) == (True, False, False)
    g.mark(s2, evictable=False)
    g.mark(s3, evictable=False)
    assert g.admit(FakeConn("s4"), "10.0.0.1") == "source_limit"
    assert (g.counts.evicted_source, g.counts.refused_source) == (1, 1)


def test_trusted_proxies_are_exempt_from_the_per_source_limit() -> None:
    g = ConnectionGuard(limits(total=10, per_source=1, proxies="10.9.0.0/16"))
    for i in range(5):
        assert g.admit(FakeConn(str(i)), "10.9.0.1") is None
    assert g.open_count == 5


def test_forget_is_idempotent_and_frees_the_slot() -> None:
    g = ConnectionGuard(limits(total=1, per_source=1))
    a = FakeConn("a")
    g.admit(a, "10.0.0.1")
    g.mark(a, evictable=False)
    g.forget(a)
    g.forget(a)
    assert g.open_count == 0
    assert g.admit(FakeConn("b"), "10.0.0.1") is None


@pytest.mark.parametrize(
    ("max_connections", "per_source", "nofile", "want"),
    [
        (0, 0, 20000, (20000 - FD_RESERVE, (20000 - FD_RESERVE) // 4)),
        (0, 0, 100, (64, 16)),
        (500, 0, 20000, (500, 125)),
        (500, 50, 20000, (500, 50)),
        (16384, 0, 1024, (1024 - FD_RESERVE, (1024 - FD_RESERVE) // 4)),  # capped by what the fd limit allows
    ],
)
def test_limits_are_sized_from_the_fd_limit_unless_set(
    max_connections: int, per_source: int, nofile: int, want: tuple[int, int]
) -> None:
    s = GatewaySettings(insecure_no_auth=True, max_connections=max_connections, max_connections_per_source=per_source)
    lim = ConnectionLimits.from_settings(s, nofile)
    assert (lim.max_connections, lim.max_per_source) == want


@pytest.mark.parametrize(
    ("header", "lines", "hops"),
    [
        ("x-forwarded-for", ["10.1.1.1"], ["10.1.1.1"]),
        ("x-forwarded-for", ["10.1.1.1, 192.0.2.7"], ["10.1.1.1", "192.0.2.7"]),
        ("x-forwarded-for", ["10.1.1.1", "192.0.2.8"], ["10.1.1.1", "192.0.2.8"]),  # two lines, in order
        ("x-forwarded-for", ["10.1.1.1:4711"], ["10.1.1.1"]),
        ("x-forwarded-for", ["[2001:db8::1]:80, 2001:db8::2"], ["2001:db8::1", "2001:db8::2"]),
        ("x-forwarded-for", [" , ,"], []),
        ("forwarded", ["for=10.1.1.1;proto=https;by=192.0.2.1"], ["10.1.1.1"]),
        ("forwarded", ['For="10.1.1.1:4711"'], ["10.1.1.1"]),
        ("forwarded", ['for="[2001:db8::1]:4711", for=192.0.2.7'], ["2001:db8::1", "192.0.2.7"]),
        ("forwarded", ["for=unknown"], ["unknown"]),  # not an address: matches no allowlist
        ("forwarded", ["proto=https"], []),
    ],
)
def test_forwarded_hops(header: str, lines: list[str], hops: list[str]) -> None:
    assert forwarded_hops(lines, header) == hops
