"""What the numbers were measured on: machine, load at the start, versions of everything in the path."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import load
from bench.services import Broker
from tests.support.procs import ROOT

PACKAGES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "pydantic-core",
    "aiokafka",
    "faust-streaming",
    "mode-streaming",
    "rocksdict",
    "orjson",
    "prometheus-client",
    "py-spy",
    "matplotlib",
)


def _first_line(argv: list[str]) -> str:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0] if text else ""


def describe(broker: Broker) -> dict[str, Any]:
    cpu = next(
        (
            x.split(":", 1)[1].strip()
            for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions: dict[str, str | None] = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "kafka": (ROOT / "scripts" / "KAFKA_VERSION").read_text().strip(),
        "broker": broker.bootstrap + (" (started by bench, scripts/kafka.sh)" if broker.local else " (given)"),
        "java": _first_line(["java", "-version"]),
        "wrk": _first_line([load.wrk_bin(), "--version"]),
        "vegeta": _first_line([load.vegeta_bin(), "-version"]),
        "commit": _first_line(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"]),
        "packages": versions,
    }
