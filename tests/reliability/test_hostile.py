"""A corpus of 200+ generated bad requests against the real gateway process: no 5xx but the documented 503,
no crash, no token or unmasked number leaked into a response or a log."""

from __future__ import annotations

import copy
import json
import secrets
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from schemas.push import DEMO_PUSH
from tests.reliability.conftest import Rig
from tests.support.events import DELETE, set_path

pytestmark = pytest.mark.integration
NUMBER = "8613912345678"  # appears in valid-looking pushes of the corpus; must never be logged in clear


@dataclass
class Req:
    name: str
    method: str = "POST"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    query: list[tuple[str, str]] | None = None  # None: the right token


def base() -> dict[str, Any]:
    body = copy.deepcopy(DEMO_PUSH)
    body["data"]["requestParams"]["caller"] = NUMBER
    return body


FIELDS = [
    "code",
    "msg",
    "requestId",
    "data",
    "data.action",
    "data.requestParams",
    "data.requestParams.caller",
    "data.requestParams.did",
    "data.occurrenceTime",
]
BAD_VALUES: list[object] = [None, True, 1.5, "", [], {}, 10**40, "9" * 1000, {"$gt": ""}, "<script>"]


def corpus(token: str) -> Iterator[Req]:
    for f in FIELDS:
        for i, v in enumerate(BAD_VALUES):
            yield Req(f"type:{f}:{i}", body=json.dumps(set_path(base(), f, v)).encode())
        yield Req(f"missing:{f}", body=json.dumps(set_path(base(), f, DELETE)).encode())
    for n in (65 * 1024, 1024 * 1024, 8 * 1024 * 1024):
        yield Req(f"huge:{n}", body=b'{"pad":"' + b"x" * n + b'"}')
    for depth in (100, 1000, 10_000, 100_000):
        yield Req(f"nested:{depth}", body=b'{"a":' * depth + b"1" + b"}" * depth)
        yield Req(f"nested-list:{depth}", body=b"[" * depth + b"]" * depth)
    good = json.dumps(base()).encode()
    for i, bad in enumerate(
        [
            b"\xff",
            b"\xc3\x28",
            b"\xa0\xa1",
            b"\xe2\x28\xa1",
            b"\xf0\x28\x8c\xbc",
            b"\xed\xa0\x80",
            b"\x00",
            b"\xef\xbb\xbf",
            b"\xfe\xff",
            b"\x80",
        ]
    ):
        yield Req(f"utf8:{i}", body=good[:20] + bad + good[20:])
    for ct in [
        "text/plain",
        "application/xml",
        "multipart/form-data; boundary=x",
        "",
        "application/jsonx",
        "text/json",
        "application/x-www-form-urlencoded",
        "image/png",
        "application/json\r\nX-Evil: 1",
    ]:
        yield Req(f"content-type:{ct[:20]}", body=good, headers={"content-type": ct} if "\r" not in ct else {})
    for m in ("GET", "PUT", "DELETE", "PATCH"):
        yield Req(f"method:{m}", method=m, body=good)
    for i in range(60):
        yield Req(f"guess:{i}", body=good, query=[("token", secrets.token_urlsafe(i % 40 + 1))])
    for name, guess in [
        ("prefix", token[:-1]),
        ("suffix", token + "x"),
        ("upper", token.upper()),
        ("space", f" {token}"),
        ("empty", ""),
        ("null", "\x00"),
    ]:
        yield Req(f"near-token:{name}", body=good, query=[("token", guess)])
    yield Req("no-token", body=good, query=[])
    yield Req(
        "bearer-wrong",
        body=good,
        query=[],
        headers={"content-type": "application/json", "authorization": "Bearer nope"},
    )
    yield Req(
        "basic-scheme",
        body=good,
        query=[],
        headers={"content-type": "application/json", "authorization": f"Basic {token}"},
    )
    yield Req("token-twice-bad-first", body=good, query=[("token", "bad"), ("token", token)])
    yield Req("long-header", body=good, headers={"content-type": "application/json", "x-pad": "a" * 8000})
    yield Req("xff-spoof", body=good, headers={"content-type": "application/json", "x-forwarded-for": "1.2.3.4"})
    yield Req("long-query", body=good, query=[("token", token), ("x", "y" * 4000)])
    for i, (path, v) in enumerate(
        [
            ("requestId", 10**100),
            ("code", 10**30),
            ("data.requestParams.caller", 10**50),
            ("data.occurrenceTime", "99999-01-01 00:00:00"),
            ("requestId", -1),
            ("data.occurrenceTime", "0001-01-01 00:00:00"),
        ]
    ):
        yield Req(f"oversized:{i}", body=json.dumps(set_path(base(), path, v)).encode())


def test_hostile_corpus_gets_clear_answers_and_nothing_breaks(rig: Rig) -> None:
    token = rig.env["BINDWATCH_PUSH_TOKENS"]
    reqs = list(corpus(token))
    assert len(reqs) >= 200
    statuses: Counter[int] = Counter()
    bad: list[str] = []
    with httpx.Client(timeout=30) as client:
        for r in reqs:
            query = [("token", token)] if r.query is None else r.query
            resp = client.request(r.method, rig.push_url, params=tuple(query), content=r.body, headers=r.headers)
            statuses[resp.status_code] += 1
            if resp.status_code >= 500 and resp.status_code != 503:
                bad.append(f"{r.name}: {resp.status_code}")
            if token in resp.text or NUMBER in resp.text:
                bad.append(f"{r.name}: leaked into the response")
            if resp.status_code != 200 and not resp.headers.get("content-type", "").startswith("application/json"):
                bad.append(f"{r.name}: non-JSON error body")
        assert client.get(rig.push_url.rsplit("/v1", 1)[0] + "/healthz").status_code == 200
    assert rig.gateway.alive(), "the gateway process died"
    log = rig.gateway.log_text()
    assert token not in log, "the token leaked into the gateway log"
    assert NUMBER not in log, "an unmasked number leaked into the gateway log"
    rig.results.append(
        {
            "scenario": "hostile input corpus",
            "requests": len(reqs),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "5xx_other_than_503": len([b for b in bad if ": 5" in b]),
            "leaks": len([b for b in bad if "leaked" in b]),
        }
    )
    assert bad == [], bad
    assert statuses[503] == 0  # the broker is up here: nothing to refuse
