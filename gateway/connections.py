"""The gateway's connection layer: who may connect, for how long, and how many at once.

uvicorn has no deadline for receiving a request (its keep-alive timer runs only between requests and every byte
resets it: uvicorn#1192), no connection limit that acts before a request is read, and nothing per source. With
the gateway on a public URL, 21,000 silent TCP connections used up its file descriptors and a real push got no
answer at all. ``GuardedHttpToolsProtocol`` wraps uvicorn's httptools protocol so that, in each process:

* a peer outside ``BINDWATCH_ALLOWED_SOURCES`` that is not a trusted proxy is closed in ``connection_made``,
  before a byte is read (behind a proxy the proxy is what connects: the limit then belongs in the proxy, see
  ``docs/deployment.md``);
* a new connection that sends nothing within ``idle_connection_timeout_seconds`` is closed;
* a request must arrive whole (headers and body) within ``request_timeout_seconds`` of its first byte, else the
  client gets 408 and the connection is closed; header blocks over ``MAX_HEADER_BYTES`` get 431;
* at most ``max_connections`` are open, and ``max_connections_per_source`` per peer address (trusted proxies are
  exempt). A new connection over a limit first closes the oldest connection that is idle or still sending its
  request (what an attacker holds), and is itself refused only when every open one is busy with a complete
  request. So a push from NXCLOUD, which connects and sends at once, gets through while an attack holds slots.

Phases of a connection, and which ones may be evicted::

    new ──first byte──▶ receiving ──request complete──▶ busy ──response sent──▶ keepalive ──byte──▶ receiving
    (evictable)         (evictable)                     (kept)                  (evictable)

Keep-alive between complete requests is uvicorn's own (``keepalive_timeout_seconds``), as before.

Counters go to ``/metrics`` through ``ConnectionCollector``; one log line a minute summarises them (never one per
connection: an attack must not become a log flood).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import resource
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Protocol

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config import GatewaySettings, Network, get_settings

log = logging.getLogger("bindwatch.gateway.connections")

FD_RESERVE = 256
"""File descriptors kept back from the connection limit: Kafka sockets, logs, the listening socket."""
MAX_HEADER_BYTES = 64 * 1024
Phase = Literal["new", "receiving", "busy", "keepalive"]


def fd_limit() -> int:
    """The process's soft limit on open files."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one (what the container or unit grants) and return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # a sandbox may forbid it: keep the soft limit
            pass
    return soft


@dataclass(frozen=True)
class ConnectionLimits:
    allowed_sources: tuple[Network, ...]
    trusted_proxies: tuple[Network, ...]
    max_connections: int
    max_per_source: int
    idle_timeout: float
    request_timeout: float
    summary_interval: float = 60.0

    @classmethod
    def from_settings(cls, s: GatewaySettings, nofile: int | None = None) -> ConnectionLimits:
        room = max(64, (nofile if nofile is not None else fd_limit()) - FD_RESERVE)
        total = min(s.max_connections, room) if s.max_connections else room
        per_source = s.max_connections_per_source or max(16, total // 4)
        return cls(
            allowed_sources=tuple(s.allowed_sources),
            trusted_proxies=tuple(s.trusted_proxies),
            max_connections=total,
            max_per_source=min(per_source, total),
            idle_timeout=s.idle_connection_timeout_seconds,
            request_timeout=s.request_timeout_seconds,
            summary_interval=s.connection_summary_seconds,
        )


@dataclass
class ConnectionCounts:
    """Monotonic counters since the process started."""

    opened: int = 0
    dropped_allowlist: int = 0
    refused_process: int = 0
    refused_source: int = 0
    evicted_process: int = 0
    evicted_source: int = 0
    closed_idle: int = 0
    closed_request: int = 0
    closed_header_size: int = 0

    def minus(self, other: ConnectionCounts) -> dict[str, int]:
        return {f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}

    def copy(self) -> ConnectionCounts:
        return ConnectionCounts(**{f.name: getattr(self, f.name) for f in fields(self)})


class Evictable(Protocol):
    def evict(self) -> None: ...


def _in(address: str | None, networks: Sequence[Network]) -> bool:
    if address is None:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


@dataclass
class ConnectionGuard:
    """The per-process book of open connections; pure bookkeeping, no sockets (unit-tested with fakes)."""

    limits: ConnectionLimits
    counts: ConnectionCounts = field(default_factory=ConnectionCounts)
    peak: int = 0
    _open: dict[Evictable, str | None] = field(default_factory=dict)
    _per_source: dict[str | None, int] = field(default_factory=dict)
    _evictable: OrderedDict[Evictable, None] = field(default_factory=OrderedDict)
    _evictable_by_source: dict[str | None, OrderedDict[Evictable, None]] = field(default_factory=dict)
    _reported: ConnectionCounts = field(default_factory=ConnectionCounts)
    _summary: asyncio.TimerHandle | None = None

    @property
    def open_count(self) -> int:
        return len(self._open)

    def admit(self, conn: Evictable, peer: str | None) -> str | None:
        """Register ``conn`` from ``peer``; None when admitted, else why it must be closed unread."""
        lim = self.limits
        proxy = _in(peer, lim.trusted_proxies)
        if lim.allowed_sources and not proxy and not _in(peer, lim.allowed_sources):
            self.counts.dropped_allowlist += 1
            return "allowlist"
        if not proxy and self._per_source.get(peer, 0) >= lim.max_per_source:
            victim = _oldest(self._evictable_by_source.get(peer))
            if victim is None:
                self.counts.refused_source += 1
                return "source_limit"
            self.counts.evicted_source += 1
            self._evict(victim)
        if len(self._open) >= lim.max_connections:
            victim = _oldest(self._evictable)
            if victim is None:
                self.counts.refused_process += 1
                return "process_limit"
            self.counts.evicted_process += 1
            self._evict(victim)
        self._open[conn] = peer
        self._per_source[peer] = self._per_source.get(peer, 0) + 1
        self.counts.opened += 1
        self.peak = max(self.peak, len(self._open))
        self.mark(conn, evictable=True)
        return None

    def mark(self, conn: Evictable, *, evictable: bool) -> None:
        """Enter an evictable phase (moved to the young end) or a kept one."""
        if conn not in self._open:
            return
        peer = self._open[conn]
        by_source = self._evictable_by_source.setdefault(peer, OrderedDict())
        self._evictable.pop(conn, None)
        by_source.pop(conn, None)
        if evictable:
            self._evictable[conn] = None
            by_source[conn] = None

    def forget(self, conn: Evictable) -> None:
        """The connection is gone (idempotent)."""
        if conn not in self._open:
            return
        peer = self._open.pop(conn)
        self._evictable.pop(conn, None)
        by_source = self._evictable_by_source.get(peer)
        if by_source is not None:
            by_source.pop(conn, None)
            if not by_source:
                del self._evictable_by_source[peer]
        left = self._per_source[peer] - 1
        if left:
            self._per_source[peer] = left
        else:
            del self._per_source[peer]

    def _evict(self, victim: Evictable) -> None:
        self.forget(victim)
        victim.evict()

    def start_summaries(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._summary is None:
            self._summary = loop.call_later(self.limits.summary_interval, self._summarise, loop)

    def _summarise(self, loop: asyncio.AbstractEventLoop) -> None:
        delta = self.counts.minus(self._reported)
        self._reported = self.counts.copy()
        log.info(
            "connection summary",
            extra={
                "fields": {
                    "interval_s": self.limits.summary_interval,
                    "open": self.open_count,
                    "peak": self.peak,
                    **delta,
                }
            },
        )
        self.peak = self.open_count
        self._summary = loop.call_later(self.limits.summary_interval, self._summarise, loop)


def _oldest(book: OrderedDict[Evictable, None] | None) -> Evictable | None:
    return next(iter(book)) if book else None


def _response(status: str, error: str, message: str) -> bytes:
    body = orjson.dumps({"status": "rejected", "error": error, "message": message})
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the guard's admission, deadlines and eviction (see the module docstring).

    uvicorn builds one per connection from ``config.http`` (``python -m gateway`` passes this class by its import
    path, so every worker process builds its own guard from its settings). Tests may set ``guard`` first.
    """

    guard: ClassVar[ConnectionGuard | None] = None

    @classmethod
    def current(cls) -> ConnectionGuard | None:
        return cls.guard

    @classmethod
    def process_guard(cls) -> ConnectionGuard:
        if cls.guard is None:
            cls.guard = ConnectionGuard(ConnectionLimits.from_settings(get_settings()))
        return cls.guard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = self.process_guard()
        self._admitted = False
        self._phase: Phase = "new"
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._headers_done = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        peer = transport.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) and peer else None
        if self._guard.admit(self, host) is not None:
            transport.abort()  # nothing read, nothing answered: the cheapest refusal there is
            return
        self._admitted = True
        super().connection_made(transport)
        self._guard.start_summaries(self.loop)
        self._arm(self._guard.limits.idle_timeout, "idle")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._admitted:
            return
        self._disarm()
        self._guard.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase in ("new", "keepalive"):
            self._enter_receiving()
        if not self._headers_done:
            self._header_bytes += len(data)
        super().data_received(data)
        if not self._headers_done and self._header_bytes > MAX_HEADER_BYTES and not self.transport.is_closing():
            self._guard.counts.closed_header_size += 1
            self._close_with(
                _response(
                    "431 Request Header Fields Too Large",
                    "headers_too_large",
                    f"the request line and headers exceed {MAX_HEADER_BYTES} bytes",
                )
            )

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        self._headers_done = False
        self._header_bytes = 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and not self.cycle.response_complete:
            self._phase = "busy"
            self._disarm()
            self._guard.mark(self, evictable=False)
        else:  # answered before its body ended (an early 4xx): idle again, with uvicorn's keep-alive timer
            self._enter_keepalive()
            if self.timeout_keep_alive_task is None and not self.transport.is_closing():
                self.timeout_keep_alive_task = self.loop.call_later(
                    self.timeout_keep_alive, self.timeout_keep_alive_handler
                )

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:  # a pipelined request started
            if self.cycle.more_body:
                self._enter_receiving()
            else:
                self._phase = "busy"
                self._guard.mark(self, evictable=False)
        else:
            self._enter_keepalive()

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers an unparseable request in text/plain; every error body of ours is JSON."""
        self._disarm()
        self.transport.write(
            _response("400 Bad Request", "bad_http", "the request is not valid HTTP/1.1: " + msg.rstrip("."))
        )
        self.transport.close()

    # the guard's side

    def evict(self) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _enter_receiving(self) -> None:
        self._phase = "receiving"
        self._arm(self._guard.limits.request_timeout, "request")
        self._guard.mark(self, evictable=True)

    def _enter_keepalive(self) -> None:
        self._phase = "keepalive"
        self._disarm()
        self._guard.mark(self, evictable=True)

    def _arm(self, seconds: float, kind: Literal["idle", "request"]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, kind)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, kind: Literal["idle", "request"]) -> None:
        self._deadline = None
        if self.transport is None or self.transport.is_closing():
            return
        if kind == "idle":
            self._guard.counts.closed_idle += 1
            self.transport.close()
            return
        self._guard.counts.closed_request += 1
        started = self.cycle is not None and self.cycle.response_started
        seconds = self._guard.limits.request_timeout
        self._close_with(
            None
            if started
            else _response(
                "408 Request Timeout",
                "request_timeout",
                f"the request was not received completely within {seconds:g} s of its first byte",
            )
        )

    def _close_with(self, response: bytes | None) -> None:
        self._disarm()
        if response is not None:
            self.transport.write(response)
        self.transport.close()
        if self.cycle is not None and not self.cycle.response_complete:
            # the app may be waiting for the rest of the body: it sees a disconnect and answers nobody
            self.cycle.disconnected = True
            self.cycle.message_event.set()


class ConnectionCollector(Collector):
    """The guard's counters as Prometheus metrics (zeros when no guard runs, e.g. under the test client)."""

    def __init__(self, guard_of: Callable[[], ConnectionGuard | None]) -> None:
        self._guard_of = guard_of

    def collect(self) -> Iterator[Metric]:
        g = self._guard_of()
        c = g.counts if g is not None else ConnectionCounts()
        yield GaugeMetricFamily(
            "bindwatch_gateway_connections_open", "Open client connections.", value=g.open_count if g else 0
        )
        limit = GaugeMetricFamily(
            "bindwatch_gateway_connections_limit", "Connection limits in force.", labels=["scope"]
        )
        limit.add_metric(["process"], g.limits.max_connections if g else 0)
        limit.add_metric(["per_source"], g.limits.max_per_source if g else 0)
        yield limit
        yield CounterMetricFamily("bindwatch_gateway_connections_opened", "Connections admitted.", value=c.opened)
        closed = CounterMetricFamily(
            "bindwatch_gateway_connections_closed_by_deadline",
            "Connections closed because a deadline passed: idle (nothing sent), request (not received whole in "
            "time), header_size (header block too large).",
            labels=["deadline"],
        )
        closed.add_metric(["idle"], c.closed_idle)
        closed.add_metric(["request"], c.closed_request)
        closed.add_metric(["header_size"], c.closed_header_size)
        yield closed
        refused = CounterMetricFamily(
            "bindwatch_gateway_connections_refused_by_limit",
            "New connections refused because a limit was reached and nothing could be evicted.",
            labels=["limit"],
        )
        refused.add_metric(["process"], c.refused_process)
        refused.add_metric(["per_source"], c.refused_source)
        yield refused
        evicted = CounterMetricFamily(
            "bindwatch_gateway_connections_evicted",
            "Idle or slow connections closed to make room for a new one, by the limit that was reached.",
            labels=["limit"],
        )
        evicted.add_metric(["process"], c.evicted_process)
        evicted.add_metric(["per_source"], c.evicted_source)
        yield evicted
        yield CounterMetricFamily(
            "bindwatch_gateway_connections_dropped_by_allowlist",
            "Connections closed unread because the peer is outside BINDWATCH_ALLOWED_SOURCES.",
            value=c.dropped_allowlist,
        )
