"""Who may see the operators' page (it shows phone numbers): closed by default.

A request is let in by a session cookie set at sign-in, or by HTTP Basic (any user name, a token as the password),
for scripts and curl. The tokens are ``BINDWATCH_CONSOLE_TOKENS``, compared in constant time against every token,
as the gateway compares push tokens.

The session cookie holds no secret: ``<expiry>.<HMAC-SHA256(token, expiry)>``, so rotating a token signs out every
browser that signed in with it, and a restart keeps sessions. It is ``HttpOnly`` and ``SameSite=Strict`` always, and
``Secure`` when the request reached the console (or the TLS proxy in front of it, ``X-Forwarded-Proto: https``) over
https; over plain http a ``Secure`` cookie would never come back, so it is not set (local use, port-forwarding).

Failed sign-ins are counted per source address over a minute; past ``BINDWATCH_CONSOLE_MAX_FAILED_SIGNINS`` the
console answers 429 to that source until the minute has passed. They are logged with the source, never the secret.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from starlette.requests import Request

log = logging.getLogger("bindwatch.console")
COOKIE = "bindwatch_console"
SESSION_SECONDS = 12 * 3600
FAILURE_WINDOW_SECONDS = 60.0
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/signin", "/favicon.ico"})
"""Answered without signing in: the probes, Prometheus, the sign-in form (and the static files it needs)."""
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def token_ok(presented: bytes | None, accepted: Sequence[bytes]) -> bool:
    """Constant-time comparison against every accepted token (no early exit reveals which one matched)."""
    if not presented:
        return False
    ok = False
    for t in accepted:
        ok |= hmac.compare_digest(presented, t)
    return ok


def _sign(token: bytes, expires: int) -> str:
    return hmac.new(token, f"bindwatch-console-session:{expires}".encode(), hashlib.sha256).hexdigest()


def basic_password(request: Request) -> bytes | None:
    """The password of an ``Authorization: Basic`` header (the user name is ignored), or ``None``."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(b":")[2] or None


def https(request: Request) -> bool:
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


class Access:
    """Tokens, sessions and the failed sign-in limit. ``tokens`` empty and ``open_to_all`` set: everyone is in."""

    def __init__(
        self,
        tokens: Sequence[bytes],
        open_to_all: bool,
        max_failures: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.tokens = list(tokens)
        self.open_to_all = open_to_all
        self.max_failures = max_failures
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def session(self, token: bytes) -> str:
        expires = int(self.clock()) + SESSION_SECONDS
        return f"{expires}.{_sign(token, expires)}"

    def session_ok(self, cookie: str | None) -> bool:
        if not cookie:
            return False
        stamp, _, mac = cookie.partition(".")
        if not stamp.isdigit() or int(stamp) < self.clock():
            return False
        ok = False
        for t in self.tokens:
            ok |= hmac.compare_digest(mac.encode(), _sign(t, int(stamp)).encode())
        return ok

    def signed_in(self, request: Request) -> bool:
        """Open to all, or a valid session cookie (HTTP Basic is checked by the caller, after the limit)."""
        return self.open_to_all or self.session_ok(request.cookies.get(COOKIE))

    def source(self, request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def blocked(self, source: str) -> float:
        """Seconds until ``source`` may try again (0: it may now)."""
        q = self._failures.get(source)
        if not q:
            return 0.0
        now = self.clock()
        while q and q[0] <= now - FAILURE_WINDOW_SECONDS:
            q.popleft()
        if not q:
            del self._failures[source]
            return 0.0
        return max(q[0] + FAILURE_WINDOW_SECONDS - now, 0.0) if len(q) >= self.max_failures else 0.0

    def failed(self, source: str, how: str) -> None:
        """Count and log a failed sign-in (the source and how, never what was presented)."""
        q = self._failures.setdefault(source, deque())
        q.append(self.clock())
        if len(self._failures) > 10_000:  # bounded memory under a spray from many sources: forget the oldest
            self._failures.pop(next(iter(self._failures)))
        log.warning("sign-in refused", extra={"fields": {"source": source, "how": how, "recentFailures": len(q)}})
