"""What the real server (uvicorn + httptools under ``python -m gateway``) changes compared with the in-process test
client, checked on the wire: chunked bodies, unparseable requests, early answers to 100-continue, pipelining,
headers the server adds. The review for issue 12, item 1 ("anything tested only through the in-process client").
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from schemas.push import DEMO_PUSH
from tests.support import procs
from tests.support.kafka import Names, setup_topics

pytestmark = pytest.mark.integration
TOKEN = "real-server-token"
PATH = f"/v1/nxcloud/binding-failures?token={TOKEN}"


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory, broker: object) -> Iterator[int]:
    from tests.support.broker import ProvidedBroker

    assert isinstance(broker, ProvidedBroker)
    names = Names.new("wire")
    setup_topics(broker.bootstrap, names)
    logdir: Path = tmp_path_factory.mktemp("wire")
    gw = procs.gateway(
        {**names.env(broker.bootstrap), "BINDWATCH_PUSH_TOKENS": TOKEN, "BINDWATCH_MAX_BODY_BYTES": "1024"}, logdir
    ).start()
    try:
        yield int(gw.ready_url.split(":")[2].split("/")[0])
    finally:
        gw.stop()


def _exchange(port: int, raw: bytes, *, expect_responses: int = 1) -> list[tuple[str, dict[str, str], bytes]]:
    """Send raw bytes, read until the server closes or ``expect_responses`` complete responses arrived."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(raw)
        buf = b""
        out: list[tuple[str, dict[str, str], bytes]] = []
        while len(out) < expect_responses:
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= 0:
                head, rest = buf[:head_end].decode(), buf[head_end + 4 :]
                lines = head.split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                n = int(headers.get("content-length", "0"))
                if len(rest) >= n:
                    out.append((lines[0], headers, rest[:n]))
                    buf = rest[n:]
                    continue
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    return out


def _push(rid: str) -> bytes:
    return orjson.dumps({**DEMO_PUSH, "requestId": rid})


def test_a_chunked_body_over_the_limit_gets_413_json(port: int) -> None:
    chunk = b"x" * 600
    raw = (
        (
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + b"".join(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for _ in range(3))
        + b"0\r\n\r\n"
    )
    [(status, _, body)] = _exchange(port, raw)
    assert status.startswith("HTTP/1.1 413"), status
    assert orjson.loads(body)["error"] == "body_too_large"


def test_a_valid_chunked_push_is_accepted(port: int) -> None:
    body = _push("wire-chunked-1")
    raw = (
        (
            f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
        + f"{len(body):x}\r\n".encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    [(status, _, answer)] = _exchange(port, raw)
    assert status.startswith("HTTP/1.1 200"), (status, answer)


def test_an_unparseable_request_gets_a_json_400(port: int) -> None:
    [(status, headers, body)] = _exchange(port, b"POST /v1 HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
    assert status.startswith("HTTP/1.1 400"), status
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body)["error"] == "bad_http"


def test_expect_100_continue_with_a_declared_oversize_body_is_refused_before_the_body(port: int) -> None:
    raw = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 999999\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    [(status, _, _)] = _exchange(port, raw)
    assert status.startswith("HTTP/1.1 413"), status  # no "100 Continue" first: the body is never invited


def test_pipelined_pushes_are_answered_in_order_and_no_server_header_is_sent(port: int) -> None:
    bodies = [_push(f"wire-pipe-{i}") for i in range(3)]
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    raw = b"".join(f"{head}Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies)
    answers = _exchange(port, raw, expect_responses=3)
    assert [orjson.loads(a[2])["requestId"] for a in answers] == [f"wire-pipe-{i}" for i in range(3)]
    assert all(a[0].startswith("HTTP/1.1 200") and "server" not in a[1] for a in answers)
