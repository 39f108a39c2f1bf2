"""Load generators: ``wrk`` (closed loop, max throughput) and ``vegeta`` (open loop, constant rate).

Both target 127.0.0.1 only and are bounded by a duration and a process timeout.
"""

from __future__ import annotations

import base64
import math
import re
import resource
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import orjson

from tests.support.procs import ROOT

LUA = ROOT / "bench" / "push.lua"
_RFC3339 = re.compile(r"^(?P<head>[^.Z+]+?)(?:\.(?P<frac>\d+))?(?P<zone>Z|[+-]\d\d:\d\d)?$")


def wrk_bin() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError(
            "wrk is not installed: run bench/run.sh (it installs it with apt-get) or apt-get install wrk"
        )
    return found


def vegeta_bin() -> str:
    local = ROOT / ".tools" / "bin" / "vegeta"
    found = str(local) if local.exists() else shutil.which("vegeta")
    if found is None:
        raise RuntimeError("vegeta is not installed: run bench/run.sh (it installs it with go install)")
    return found


def _loopback(url: str) -> None:
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"load is only ever sent to 127.0.0.1, not {url}")


def wrk(base_url: str, *, connections: int, seconds: int, tag: str, token: str) -> dict[str, float]:
    """Closed loop: ``connections`` keep-alive connections, each sending the next push as soon as it is answered."""
    _loopback(base_url)
    threads = 1  # one wrk thread drives this server easily and leaves the cores to what is measured
    argv = [
        wrk_bin(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        base_url,
        "--",
        tag,
        token,
    ]
    cpu0 = _children_cpu()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    wrk_cpu = _children_cpu() - cpu0
    line = next((x for x in r.stdout.splitlines() if x.startswith("WRK_JSON ")), None)
    if r.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    d = orjson.loads(line.removeprefix("WRK_JSON "))
    secs = d["duration_us"] / 1e6
    ok = d["requests"] - d["status"]
    return {
        "connections": connections,
        "threads": threads,
        "seconds": round(secs, 2),
        "requests": d["requests"],
        "ok_200": ok,
        "non_2xx": d["status"],
        "socket_errors": d["connect"] + d["read"] + d["write"] + d["timeout"],
        "rps": round(d["requests"] / secs),
        "ok_rps": round(ok / secs),
        "p50_ms": d["p50_us"] / 1000,
        "p99_ms": d["p99_us"] / 1000,
        "p999_ms": d["p999_us"] / 1000,
        "max_ms": d["max_us"] / 1000,
        "loadgen_cores": round(wrk_cpu / secs, 2),
    }


@dataclass
class Shot:
    ts: float  # wall-clock time the request was sent (epoch seconds)
    latency: float  # seconds
    code: int
    rid: str | None


def _children_cpu() -> float:
    """CPU seconds of the waited-for children of this process (the load generator after it exits)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def vegeta(targets: Path, *, rate: int, seconds: int, out: Path) -> list[Shot]:
    """Open loop: ``rate`` requests per second for ``seconds``, whatever the answers take; every result."""
    first = targets.open("rb").readline()
    _loopback(orjson.loads(first)["url"])
    attack = [
        vegeta_bin(),
        "attack",
        "-format=json",
        f"-targets={targets}",
        f"-rate={rate}/s",
        f"-duration={seconds}s",
        "-timeout=10s",
        f"-output={out}",
    ]
    r = subprocess.run(attack, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"vegeta attack failed ({r.returncode}): {r.stderr[-2000:]}")
    return read_vegeta(out)


def read_vegeta(results: Path) -> list[Shot]:
    enc = subprocess.run(
        [vegeta_bin(), "encode", "--to", "json", str(results)], capture_output=True, timeout=300, check=True
    )
    shots = []
    for line in enc.stdout.splitlines():
        d = orjson.loads(line)
        rid = None
        if d.get("body"):
            try:
                rid = orjson.loads(base64.b64decode(d["body"])).get("requestId")
            except orjson.JSONDecodeError:
                rid = None
        shots.append(Shot(_epoch(d["timestamp"]), d["latency"] / 1e9, d["code"], rid))
    shots.sort(key=lambda s: s.ts)
    return shots


def _epoch(rfc3339: str) -> float:
    """Go's RFC 3339 with nanoseconds -> epoch seconds (datetime.fromisoformat takes at most microseconds)."""
    m = _RFC3339.match(rfc3339)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {rfc3339!r}")
    zone = "+00:00" if m.group("zone") in ("Z", "") else m.group("zone")
    whole = datetime.fromisoformat(m.group("head") + zone).timestamp()
    return whole + (float("0." + m.group("frac")) if m.group("frac") else 0.0)


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, math.ceil(p / 100 * len(sorted_values)) - 1))  # nearest rank
    return sorted_values[k]


def latency_summary(shots: list[Shot], rate: int, seconds: int) -> dict[str, float]:
    lat = sorted(s.latency * 1000 for s in shots)
    ok = sum(1 for s in shots if s.code == 200)
    span = (shots[-1].ts - shots[0].ts) if len(shots) > 1 else float(seconds)
    return {
        "rate": rate,
        "seconds": seconds,
        "requests": len(shots),
        "ok_200": ok,
        "errors": len(shots) - ok,
        "achieved_rps": round(len(shots) / span, 1) if span > 0 else 0.0,
        "p50_ms": round(percentile(lat, 50), 2),
        "p90_ms": round(percentile(lat, 90), 2),
        "p99_ms": round(percentile(lat, 99), 2),
        "p999_ms": round(percentile(lat, 99.9), 2),
        "max_ms": round(lat[-1], 2) if lat else float("nan"),
    }
