"""An NXCLOUD simulator: sends pushes the way NXCLOUD does, and keeps its own ledger.

Only HTTP 200 means accepted. Anything else (another status, a refused connection, a timeout) is retried
on a schedule — NXCLOUD retries every minute for 60 minutes; tests compress that, e.g. every 1 s for up
to 60 attempts — and a push still not accepted after the last attempt is given up: lost.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from tests.support.events import push


@dataclass
class Ledger:
    offered: int = 0
    accepted: dict[str, dict[str, object]] = field(default_factory=dict)  # requestId -> the body accepted
    attempts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    given_up: list[str] = field(default_factory=list)
    redelivered: int = 0  # extra deliveries of already accepted pushes (NXCLOUD duplicates)
    failed_at: list[float] = field(default_factory=list)  # monotonic times of answers other than 200

    def unavailable_seconds(self) -> int:
        """Whole seconds in which at least one attempt got something other than 200 (how long pushes failed)."""
        return len({int(t) for t in self.failed_at})

    @property
    def retried(self) -> int:
        """Pushes that needed more than one attempt."""
        return sum(1 for n in self.attempts.values() if n > 1)

    def summary(self) -> dict[str, object]:
        return {
            "offered": self.offered,
            "accepted": len(self.accepted),
            "retried": self.retried,
            "given_up": len(self.given_up),
            "redelivered": self.redelivered,
            "statuses": dict(self.statuses),
            "unavailable_seconds": self.unavailable_seconds(),
        }


@dataclass
class Simulator:
    url: str
    token: str
    rate: float  # new pushes per second
    duration: float  # seconds of offering new pushes
    retry_interval: float = 1.0
    max_attempts: int = 60
    callers: int = 300
    dids: int = 100
    duplicate_share: float = 0.0  # share of accepted pushes delivered once more
    duplicate_delay: float = 0.0  # seconds after acceptance ("again minutes later", compressed)
    seed: int = 1
    concurrency: int = 64  # requests in flight at once; more wait their turn (httpcore's pool degrades badly
    # when hundreds of requests queue inside it while connections fail)
    ledger: Ledger = field(default_factory=Ledger)

    def _push(self, n: int, rnd: random.Random) -> dict[str, object]:
        # A realistic mix: a few repeat offenders among mostly spread-out numbers.
        caller = f"8613{rnd.randrange(self.callers):09d}"
        did = f"8529{rnd.randrange(self.dids):08d}"
        return push(f"{self.seed}{n:012d}", caller, did, datetime.now(UTC))

    async def _deliver(self, client: httpx.AsyncClient, body: dict[str, object], counted: bool = True) -> bool:
        rid = str(body["requestId"])
        for _attempt in range(self.max_attempts):
            if counted:
                self.ledger.attempts[rid] += 1
            try:
                async with self._slots:
                    r = await client.post(self.url, params={"token": self.token}, json=body)
                status = str(r.status_code)
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            self.ledger.statuses[status] += 1
            if status == "200":
                return True
            self.ledger.failed_at.append(time.monotonic())
            await asyncio.sleep(self.retry_interval)
        return False

    async def _one(self, client: httpx.AsyncClient, body: dict[str, object], rnd: random.Random) -> None:
        rid = str(body["requestId"])
        if await self._deliver(client, body):
            self.ledger.accepted[rid] = body
            if self.duplicate_share and rnd.random() < self.duplicate_share:
                await asyncio.sleep(self.duplicate_delay)
                self.ledger.redelivered += 1
                await self._deliver(client, body, counted=False)
        else:
            self.ledger.given_up.append(rid)

    async def run(self) -> Ledger:
        rnd = random.Random(self.seed)
        self._slots = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=2.0), limits=limits) as client:
            tasks: list[asyncio.Task[None]] = []
            start = time.monotonic()
            n = 0
            while (elapsed := time.monotonic() - start) < self.duration:
                due = int(elapsed * self.rate) + 1
                while n < due:
                    tasks.append(asyncio.create_task(self._one(client, self._push(n, rnd), rnd)))
                    n += 1
                    self.ledger.offered += 1
                await asyncio.sleep(0.01)
            bound = self.max_attempts * (self.retry_interval + 10.0) + self.duplicate_delay + 30
            await asyncio.wait_for(asyncio.gather(*tasks), bound)
        return self.ledger


def run_in_thread(sim: Simulator) -> tuple[threading.Thread, Ledger]:
    """Start the simulator in a thread (so a test can inject faults meanwhile); returns (thread, ledger)."""
    t = threading.Thread(target=lambda: asyncio.run(sim.run()), name="nxcloud-simulator", daemon=True)
    t.start()
    return t, sim.ledger
