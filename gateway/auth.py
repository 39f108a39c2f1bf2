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


def client_address(request: Request, trusted: Sequence[Network]) -> str | None:
    """The peer address, or the first untrusted hop of X-Forwarded-For when the peer is a trusted proxy."""
    peer = request.client.host if request.client else None
    if peer is None or not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",") if h.strip()]
    for hop in reversed(hops):
        if not _in(hop, trusted):
            return hop
    return hops[0] if hops else peer


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
