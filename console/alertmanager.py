"""Delivery to Alertmanager API v2: every configured Alertmanager gets every change, and all firing alerts again
every resend interval (as Prometheus does), so an Alertmanager that lost its state (restart, empty storage) has
them back within one interval, and one that stops hearing from the console resolves them by itself.

Per Alertmanager the console remembers which changes it has not yet acknowledged (``_pending``), so a
``resolved`` sent while it was down is delivered when it returns; the full resend covers firing alerts. Every
call is bounded in time and retried with backoff; a failure never blocks the Kafka consumer (this runs in its
own task and reads the view, it never holds it).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from console.config import ConsoleSettings
from console.mapping import KEEP_ALIVE_FACTOR, labels, to_alertmanager
from console.observability import ConsoleMetrics
from console.records import AlertChange
from console.view import AlertView
from schemas.alerts import AlertStatus

log = logging.getLogger("bindwatch.console.alertmanager")
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_MAX_SECONDS = 5.0


def _now() -> datetime:
    return datetime.now(UTC)


class Alertmanagers:
    """Posts the view's alerts to every URL in ``BINDWATCH_ALERTMANAGER_URLS``."""

    def __init__(
        self,
        settings: ConsoleSettings,
        view: AlertView,
        metrics: ConsoleMetrics,
        client: httpx.AsyncClient,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.settings = settings
        self.view = view
        self.metrics = metrics
        self.client = client
        self.clock = clock
        self.urls = list(settings.alertmanager_urls)
        self._pending: dict[str, dict[str, int]] = {u: {} for u in self.urls}
        self._retired: dict[str, dict[tuple[tuple[str, str], ...], AlertChange]] = {u: {} for u in self.urls}
        self._version = 0
        self._wake = asyncio.Event()
        self.reachable: dict[str, bool] = dict.fromkeys(self.urls, False)
        self.last_full: dict[str, float | None] = dict.fromkeys(self.urls, None)
        self._started: float | None = None
        metrics.resend_lag.set_function(self.resend_lag)

    # ---- what is owed -----------------------------------------------------------------------------------

    def changed(self, fingerprint: str) -> None:
        """The view holds a new change of this alert: every Alertmanager must get it."""
        self._version += 1
        for pending in self._pending.values():
            pending[fingerprint] = self._version
        self._wake.set()

    def retire(self, previous: AlertChange) -> None:
        """An alert's labels changed (severity rose, it joined an outage): Alertmanager identifies alerts by their
        labels, so the old label set is a different alert there; end it now instead of letting it linger until
        its endsAt."""
        key = tuple(sorted(labels(previous, self.settings).items()))
        for retired in self._retired.values():
            retired[key] = previous
        self._wake.set()

    def owe_view(self) -> None:
        """After the rebuild: owe every firing alert, and resolutions recent enough that an Alertmanager may still
        hold the alert as firing (it keeps one until the endsAt of the last resend)."""
        horizon = self.clock() - timedelta(seconds=2 * KEEP_ALIVE_FACTOR * self.settings.alertmanager_resend_seconds)
        for a in self.view:
            if a.status is AlertStatus.FIRING or a.emittedAt >= horizon:
                self.changed(a.fingerprint)

    def pending(self, url: str) -> int:
        return len(self._pending[url]) + len(self._retired[url])

    # ---- calls ------------------------------------------------------------------------------------------

    async def post(self, url: str, alerts: list[dict[str, Any]]) -> bool:
        """One bounded, retried ``POST /api/v2/alerts``; True once Alertmanager answered 2xx."""
        endpoint = f"{url}/api/v2/alerts"
        timeout = self.settings.alertmanager_timeout_seconds
        attempts = self.settings.alertmanager_retries + 1
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_MAX_SECONDS))
            try:
                async with asyncio.timeout(timeout):
                    r = await self.client.post(endpoint, json=alerts, timeout=timeout)
            except TimeoutError:
                self.metrics.posts.labels("timeout").inc()
                why = f"no answer within {timeout}s"
            except httpx.HTTPError as exc:
                self.metrics.posts.labels("error").inc()
                why = f"{type(exc).__name__}: {exc}"
            else:
                if 200 <= r.status_code < 300:
                    self.metrics.posts.labels("ok").inc()
                    self.metrics.alerts_sent.inc(len(alerts))
                    return True
                if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
                    # The request itself is wrong: retrying sends the same thing. Say what Alertmanager said.
                    self.metrics.posts.labels("rejected").inc()
                    log.error(
                        "Alertmanager rejected alerts",
                        extra={"fields": {"url": url, "status": r.status_code, "body": r.text[:500]}},
                    )
                    return False
                self.metrics.posts.labels("error").inc()
                why = f"HTTP {r.status_code}"
            log.warning(
                "Alertmanager call failed",
                extra={"fields": {"url": url, "attempt": attempt + 1, "of": attempts, "reason": why}},
            )
        return False

    async def _deliver(self, url: str, full: bool) -> None:
        now = self.clock()
        owed = dict(self._pending[url])
        chosen = {a.fingerprint: a for a in self.view.firing()} if full else {}
        for fp in owed:
            a = self.view.get(fp)
            if a is not None:
                chosen[fp] = a
        retired = dict(self._retired[url])
        ended = [to_alertmanager(a, self.settings, now, ended=now) for a in retired.values()]
        ok = not ended or await self.post(url, ended)
        if ok:
            for key in retired:
                self._retired[url].pop(key, None)
        items = list(chosen.values())
        size = self.settings.alertmanager_batch_size
        for i in range(0, max(len(items), 1), size):  # an empty list still asks whether it is reachable
            batch = items[i : i + size]
            if not ok or not await self.post(url, [to_alertmanager(a, self.settings, now) for a in batch]):
                ok = False
                break
            pending = self._pending[url]
            for a in batch:
                if fp_version := owed.get(a.fingerprint):
                    if pending.get(a.fingerprint) == fp_version:
                        del pending[a.fingerprint]
        was = self.reachable[url]
        self.reachable[url] = ok
        self.metrics.alertmanager_up.set(sum(self.reachable.values()))
        if ok and not was:
            log.info("Alertmanager reachable", extra={"fields": {"url": url, "alerts": len(items)}})
        if ok and full:
            self.last_full[url] = time.monotonic()

    async def deliver(self, full: bool) -> None:
        await asyncio.gather(*(self._deliver(u, full) for u in self.urls if full or self.pending(u)))

    def resend_lag(self) -> float:
        """How far the slowest Alertmanager's last complete resend is behind schedule (0 when none is configured)."""
        if not self.urls or self._started is None:
            return 0.0
        now = time.monotonic()
        oldest = min((t if t is not None else self._started) for t in self.last_full.values())
        return max(0.0, now - oldest - self.settings.alertmanager_resend_seconds)

    async def run(self) -> None:
        """Deliver changes as they come and everything firing every resend interval, until cancelled."""
        interval = self.settings.alertmanager_resend_seconds
        self._started = time.monotonic()
        next_full = self._started
        while True:
            wait = next_full - time.monotonic()
            if wait > 0:
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
            self._wake.clear()
            if time.monotonic() >= next_full:
                next_full = time.monotonic() + interval
                await self.deliver(full=True)
            else:
                await self.deliver(full=False)
                # Changes that arrive during a failing call wait for the next one; don't spin on a dead URL.
                if any(self.pending(u) and not self.reachable[u] for u in self.urls):
                    await asyncio.sleep(min(1.0, interval / 4))
