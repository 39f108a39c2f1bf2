"""The stored table value of a subject: its format versions, the encoder and the loader of every version.

A value is a 14-byte prefix and a JSON document::

    b"F" | b"Q"          firing flag (any alert of the subject firing)
    b"%013d"             last activity, wall-clock epoch ms
    {"v": 1, ...}        the state, named fields (below)

The prefix lets a scan (``rules.peek``, the timer's garbage collection) find firing or stale subjects
without parsing the JSON; it is the same in every version so far. Versions:

* **0** (every release up to commit 4244c67; no marker, recognised by its shape: no ``"v"`` key):
  ``{"k": kind, "s": subject, "e": [[ts, rid, other], ...], "a": {key: [rule, other, episode, firing,
  severity, seq, first_ts, last_emit_wall, last_activity_wall, last], ...}, "f": floor_ts, "w": wall}``.
* **1**: ``{"v": 1, "k", "s", "e": {"t": [ts, ...], "r": [rid, ...], "o": [other, ...]}, "a": {key:
  {"r": rule, "o": other, "ep": episode, "on": firing, "sv": severity, "sq": seq, "ft": first_ts,
  "ew": last_emit_wall, "aw": last_activity_wall, "l": last, "ou": outage (optional, added without a new
  version: absent = none)}}, "f": floor_ts, "w": wall}``.
  Failures are stored as named columns: smaller and faster to encode and decode than rows.

Changing the format: adding a field with a default that older data lacks needs no new version (read it
with ``.get``); anything else (a renamed, removed or reinterpreted field) is a new version with its own
branch in ``load``, a ``tests/fixtures/state/v<N>/`` directory of golden values written by the release
that introduces it, and the versions before it still read. A worker meeting a version newer than it knows
refuses it (``StateFormatError``) rather than guess: a rollback past a format change needs the newer
worker back.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from schemas.alerts import Rule, Severity
from stream import StreamError
from stream.rules import TUPLE_NEW, AlertState, Failure, Kind, SubjectState

VERSION: Final = 1
"""The version this release writes."""
READS = (0, 1)
"""Every version this release loads."""
PREFIX: Final = 14


class StateFormatError(StreamError):
    """A table value this worker cannot read (damaged, or written by a newer release)."""


def dump(s: SubjectState) -> bytes:
    """The table value of ``s`` in the current format (``VERSION``)."""
    ev = s.events
    doc = {
        "v": VERSION,
        "k": str(s.kind),  # str(), not .value: the same text, without the enum module's Python descriptor
        "s": s.subject,
        "e": {"t": [f.ts for f in ev], "r": [f.rid for f in ev], "o": [f.other for f in ev]},
        "a": {
            key: {
                "r": str(a.rule),
                "o": a.other,
                "ep": a.episode,
                "on": a.firing,
                "sv": str(a.severity),
                "sq": a.seq,
                "ft": a.first_ts,
                "ew": a.last_emit_wall,
                "aw": a.last_activity_wall,
                "l": a.last,
                **({"ou": a.outage} if a.outage is not None else {}),
            }
            for key, a in s.alerts.items()
        },
        "f": s.floor_ts,
        "w": s.last_activity_wall,
    }
    flag = b"F" if s.is_firing() else b"Q"
    return flag + b"%013d" % s.last_activity_wall + orjson.dumps(doc)


_V1_HEAD: Final = b'{"v":1,'
_V1_TIMES: Final = b',"e":{"t":['


def event_times(data: bytes) -> list[int]:
    """The occurrence times (ms) of the failures a stored value retains, oldest first, without decoding the
    rest of it: after a restore the worker reads them from every recently active subject to rebuild its
    partitions' top 10 (``stream.core.StageCore.rebuild_due``), and a full ``load`` of each value was the
    larger part of that pass (5 s of a 200,000-event restore on the bench).

    Version 1 writes its fields in a fixed order (``dump``: "v", "k", "s", then "e" starting with the "t"
    column of integers); a JSON string cannot hold an unescaped quote, so the first ``,"e":{"t":[`` is that
    column. Any other version, or a value not in that shape, is loaded in full.
    """
    body = data[PREFIX:]
    if data[:1] in (b"F", b"Q") and body.startswith(_V1_HEAD):
        start = body.find(_V1_TIMES)
        end = body.find(b"]", start)
        if start > 0 and end > start:
            try:
                times = orjson.loads(body[start + len(_V1_TIMES) - 1 : end + 1])
            except orjson.JSONDecodeError:
                times = None
            if isinstance(times, list) and all(type(t) is int for t in times):
                return times
    return [f.ts for f in load(data).events]


def version_of(data: bytes) -> int:
    """The format version of a stored value (parses it)."""
    return _version(_doc(data))


def load(data: bytes) -> SubjectState:
    """The state stored in ``data``, whichever version wrote it."""
    doc = _doc(data)
    version = _version(doc)
    try:
        if version == 1:
            return _load_v1(doc)
        if version == 0:
            return _load_v0(doc)
    except (KeyError, TypeError, ValueError) as exc:
        # The type of problem only: the value holds phone numbers, which stay out of logs.
        raise StateFormatError(f"table value of version {version} is damaged: {type(exc).__name__}") from None
    raise StateFormatError(
        f"table value of format version {version!r}; this worker reads versions {READS}: "
        "a newer release wrote it (roll forward, not back)"
    )


def _doc(data: bytes) -> dict[str, Any]:
    if len(data) < PREFIX or data[:1] not in (b"F", b"Q"):
        raise StateFormatError(f"table value without the F/Q prefix ({len(data)} bytes)")
    try:
        doc = orjson.loads(data[PREFIX:])
    except orjson.JSONDecodeError as exc:
        raise StateFormatError(f"table value is not JSON after its prefix: {exc}") from None
    if not isinstance(doc, dict):
        raise StateFormatError(f"table value holds a JSON {type(doc).__name__}, not an object")
    return doc


def _version(doc: dict[str, Any]) -> int:
    v = doc.get("v")
    if v is None:
        return 0  # version 0 had no marker; its shape ("k", "s", "e", "a", "f", "w") is checked by its loader
    if type(v) is not int:
        raise StateFormatError(f"table value with a version marker that is not an integer: {v!r}")
    return v


def _load_v1(doc: dict[str, Any]) -> SubjectState:
    state = SubjectState(Kind(doc["k"]), doc["s"], floor_ts=doc["f"], last_activity_wall=doc["w"])
    e = doc["e"]
    ts, rids, others = e["t"], e["r"], e["o"]
    if not len(ts) == len(rids) == len(others):
        raise ValueError("event columns of different lengths")
    state.events = [TUPLE_NEW(Failure, f) for f in zip(ts, rids, others, strict=True)]  # built in C (rules)
    state.alerts = {
        key: AlertState(
            Rule(a["r"]),
            a["o"],
            a["ep"],
            a["on"],
            Severity(a["sv"]),
            a["sq"],
            a["ft"],
            a["ew"],
            a["aw"],
            a["l"],
            a.get("ou"),
        )
        for key, a in doc["a"].items()
    }
    return state


def _load_v0(doc: dict[str, Any]) -> SubjectState:
    state = SubjectState(Kind(doc["k"]), doc["s"], floor_ts=doc["f"], last_activity_wall=doc["w"])
    state.events = [Failure(ts, rid, other) for ts, rid, other in doc["e"]]
    for key, (rule, other, ep, firing, sev, seq, first, emit, act, last) in doc["a"].items():
        state.alerts[key] = AlertState(Rule(rule), other, ep, firing, Severity(sev), seq, first, emit, act, last)
    return state
