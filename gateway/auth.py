"""Push authentication (a secret token in the URL or a Bearer header) and the optional source allowlist."""

import hmac
import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

from gateway.config import Network


def presented_token(request: Request) -> bytes | None:
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip().encode()
    token = request.query_params.get("token")
    return token.encode() if token else None


def token_ok(presented: bytes | None, accepted: Sequence[bytes]) -> bool:
    """Constant-time comparison against every accepted token (no early exit reveals which one matched)."""
    if presented is None:
        return False
    ok = False
    for t in accepted:
        ok |= hmac.compare_digest(presented, t)
    return ok


def client_address(request: Request, trusted: Sequence[Network], header: str = "x-forwarded-for") -> str | None:
    """The address the source allowlist judges: the TCP peer, or, only when that peer is a trusted proxy, the
    rightmost hop of ``header`` that is not itself a trusted proxy.

    This is the one place that decides: uvicorn's own proxy-header rewriting is switched off (``proxy_headers=False``
    in ``gateway.__main__``), so ``request.client`` is the real peer. Only the configured header is read (a proxy
    that writes X-Forwarded-For passes a client's forged ``Forwarded`` through untouched, and vice versa), and every
    line of it counts, in order (a proxy may add its own line after the client's). A hop that is not an IP address
    (``unknown``, an obfuscated ``_hidden``) is returned as is and matches no allowlist: fail closed.
    """
    peer = request.client.host if request.client else None
    if peer is None or not trusted or not _in(peer, trusted):
        return peer
    hops = forwarded_hops(request.headers.getlist(header), header)
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


def forwarded_hops(lines: Sequence[str], header: str) -> list[str]:
    """Client addresses, leftmost (claimed origin) first, from X-Forwarded-For or RFC 7239 Forwarded lines."""
    hops: list[str] = []
    for line in lines:
        for element in line.split(","):
            element = element.strip()
            if not element:
                continue
            if header == "forwarded":
                value = next(
                    (v for k, _, v in (p.strip().partition("=") for p in element.split(";")) if k.lower() == "for"),
                    None,
                )
                if value is None:
                    continue
                hops.append(_bare_address(value.strip().strip('"')))
            else:
                hops.append(_bare_address(element))
    return hops


def _bare_address(value: str) -> str:
    """``[2001:db8::1]:4711`` -> ``2001:db8::1``; ``10.1.1.1:4711`` -> ``10.1.1.1``; anything else unchanged."""
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _in(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in n for n in networks)


def source_allowed(address: str | None, allowed: Sequence[Network]) -> bool:
    if not allowed:
        return True
    return address is not None and _in(address, allowed)
