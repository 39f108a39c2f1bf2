"""What the benchmarks send: NXCLOUD push bodies (HTTP) and normalised events (a topic backlog), with a mix of
mostly distinct numbers and some repeaters that cross the alert thresholds.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from tests.support.events import NXCLOUD_ZONE, event, push, record
from tests.support.kafka import Headers

Record = tuple[bytes, bytes, int, Headers]  # key, value, timestamp ms, headers


@dataclass(frozen=True)
class Push:
    rid: str
    caller: str
    did: str
    at: datetime  # occurrence time (aware)
    crossing: bool = False  # the push whose arrival makes its subject reach a threshold


def push_body(p: Push) -> bytes:
    """An NXCLOUD push as it arrives over HTTP (zone-less local occurrence time, like the vendor sends)."""
    return orjson.dumps(push(p.rid, p.caller, p.did, p.at))


def push_mix(n: int, tag: str, start: datetime, rate: float, series: int = 0) -> list[Push]:
    """``n`` pushes meant to be sent at ``rate`` per second from ``start``.

    Slot ``i`` is sent at ``start + i / rate``. 1 slot in 40 belongs to a *repeat caller* (3 pushes, 0.4 s
    apart at 1,000/s, to one DID: crosses pair_repeat at the third; its caller_repeat is explained by the pair
    and not sent, see README "One problem, one alert"), 1 in 40 to a *hot DID*
    (5 pushes from distinct callers, 0.4 s apart: crosses did_hot at the fifth); the other 95% have numbers
    used once. ``series`` (0-9) keeps the numbers of one call apart from another's.
    """
    out: list[Push] = []
    rep = hot = 0
    for i in range(n):
        at = start + timedelta(seconds=i / rate)
        rid = f"{tag}-{i}"
        if i % 40 == 7:  # repeat caller k: repeater slots j, j+10, j+20 of a block of 30
            block, j = divmod(rep, 30)
            k = block * 10 + j % 10
            out.append(Push(rid, f"8531{series}{k:07d}", f"8532{series}{k:07d}", at, crossing=j >= 20))
            rep += 1
        elif i % 40 == 27:  # hot DID k: hot slots j, j+10, ..., j+40 of a block of 50
            block, j = divmod(hot, 50)
            k = block * 10 + j % 10
            out.append(Push(rid, f"8533{series}{hot:07d}", f"8534{series}{k:07d}", at, crossing=j >= 40))
            hot += 1
        else:
            out.append(Push(rid, f"8535{series}{i:08d}", f"8536{series}{i:08d}", at))
    return out


def write_vegeta_targets(path: Path, url: str, pushes: list[Push]) -> int:
    """vegeta's JSON target format, one request per line, each body distinct. Returns the bytes written."""
    header = {"Content-Type": ["application/json"]}
    with path.open("wb") as f:
        for p in pushes:
            t = {"method": "POST", "url": url, "header": header, "body": base64.b64encode(push_body(p)).decode()}
            f.write(orjson.dumps(t) + b"\n")
    return path.stat().st_size


# --- the stream backlog ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class BacklogShape:
    n: int

    @property
    def repeat_callers(self) -> int:
        return max(self.n // 400, 10)

    @property
    def hot_dids(self) -> int:
        return max(self.n // 2000, 5)

    def distinct_callers(self) -> int:
        repeat_events = len(range(0, self.n, 20))
        return self.n - repeat_events + min(self.repeat_callers, repeat_events)


def storm(n: int, tag: str, callers: int = 2000, span: timedelta = timedelta(minutes=10)) -> Iterator[Record]:
    """``n`` events to **one** DID from ``callers`` callers in turn (each caller ``n / callers`` times), over
    ``span`` ending now: the DID's state holds up to ``max_events`` failures and takes every batch's writes."""
    now = datetime.now(UTC)
    start = now - span
    step = span / max(n, 1)
    did = f"8547{zlib.crc32(tag.encode()) % 10**9:09d}"
    for j in range(n):
        caller = f"8548{zlib.crc32(tag.encode()) % 10**5:05d}{j % callers:06d}"
        yield record(event(f"{tag}-{j}", caller, did, start + step * j, zone=NXCLOUD_ZONE, received=now))


def backlog(n: int, tag: str, span: timedelta = timedelta(minutes=30), first: int = 0) -> Iterator[Record]:
    """``(key, value, timestamp_ms, headers)`` for ``n`` events, occurrence times spread over ``span`` ending now.

    1 event in 20 comes from a pool of repeat callers (about 20 events each over 3 DIDs: caller_repeat and
    pair_repeat fire); 1 in 20 goes to a pool of hot DIDs (about 100 events each: did_hot
    fires); the other 90% have a caller and a DID seen once. Events are numbered from ``first``: backlogs
    numbered apart share no once-seen numbers.
    """
    shape = BacklogShape(n)
    now = datetime.now(UTC)
    start = now - span
    step = span / max(n, 1)
    for j in range(n):
        i = first + j
        at = start + step * j
        if i % 20 == 0:  # the pools are numbered per backlog (by ``first``), so backlogs never share them
            k = (j // 20) % shape.repeat_callers
            caller, did = f"8541{first:09d}{k:07d}", f"8542{first:09d}{k:07d}{i % 3}"
        elif i % 20 == 10:
            caller, did = f"8543{i:09d}", f"8544{first:09d}{(j // 20) % shape.hot_dids:07d}"
        else:
            caller, did = f"8545{i:09d}", f"8546{i:09d}"
        yield record(event(f"{tag}-{i}", caller, did, at, zone=NXCLOUD_ZONE, received=now))
