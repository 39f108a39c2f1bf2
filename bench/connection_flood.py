"""Hold N silent TCP connections against a running gateway (re-opening each one a second after the gateway closes
it) while one valid push a second is sent from another source address; print the pushes' statuses and latencies
and the gateway's connection metrics. The issue-19 reproduction (21,000 silent connections), as a measurement.

    .venv/bin/python -m bench.connection_flood --port 8080 --token "$(cat var/dev-token)" --per-process 10500

127.0.0.1 only; bounded by --seconds. Figures from a run are in docs/reliability.md ("Connection abuse").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time

import httpx

from schemas.push import DEMO_PUSH


def _hold(port: int, count: int, seconds: float, idx: int) -> None:
    async def run() -> None:
        opened = failed = 0
        end = time.monotonic() + seconds

        async def one() -> None:
            nonlocal opened, failed
            while time.monotonic() < end:
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    failed += 1
                    await asyncio.sleep(0.5)
                    continue
                opened += 1
                try:
                    await asyncio.wait_for(reader.read(1), timeout=max(0.1, end - time.monotonic()))
                except (TimeoutError, OSError):
                    pass
                writer.close()
                await asyncio.sleep(1.0)

        await asyncio.gather(*(one() for _ in range(count)))
        print(json.dumps({"holder": idx, "opened": opened, "failed": failed}), flush=True)

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--per-process", type=int, default=10500, help="connections held by each of the 2 processes")
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--push-source", default="127.0.0.3", help="local address of the valid pushes")
    a = ap.parse_args()
    holders = [mp.Process(target=_hold, args=(a.port, a.per_process, a.seconds, i)) for i in range(2)]
    for p in holders:
        p.start()
    time.sleep(3)
    statuses: list[int | str] = []
    latencies: list[float] = []
    url = f"http://127.0.0.1:{a.port}/v1/nxcloud/binding-failures"
    end = time.monotonic() + a.seconds - 5
    i = 0
    while time.monotonic() < end:
        i += 1
        t0 = time.monotonic()
        try:
            with httpx.Client(transport=httpx.HTTPTransport(local_address=a.push_source), timeout=10) as c:
                r = c.post(url, params={"token": a.token}, json={**DEMO_PUSH, "requestId": f"flood-{time.time_ns()}"})
            statuses.append(r.status_code)
        except httpx.HTTPError as exc:
            statuses.append(type(exc).__name__)
        latencies.append(round((time.monotonic() - t0) * 1000, 1))
        time.sleep(max(0.0, 1 - (time.monotonic() - t0)))
    print(json.dumps({"push_status": statuses, "latency_ms": latencies}), flush=True)
    with httpx.Client(transport=httpx.HTTPTransport(local_address=a.push_source), timeout=10) as c:
        metrics = c.get(f"http://127.0.0.1:{a.port}/metrics").text
    print("\n".join(m for m in metrics.splitlines() if "connections" in m and not m.startswith("#")))
    for p in holders:
        p.join()


if __name__ == "__main__":
    main()
