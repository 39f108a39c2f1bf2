"""Run the services as real processes (integration tests and benchmarks): start, wait until ready, stop or kill.

Each service runs in its own session (process group), so uvicorn's worker processes stop with it, and logs to
its own file. Readiness is asked with the standard library only, so no HTTP client sits in the way of a
measurement.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 2.0, source: str | None = None) -> tuple[int, bytes]:
    """(status, body); status 0 when nothing answered. Loopback URLs the kit built; ``source`` is the local
    address to connect from (a test allowlist may exclude 127.0.0.1)."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=source), timeout=timeout) as client:
            r = client.get(url)
            return r.status_code, r.content
    except httpx.HTTPError:
        return 0, b""


@dataclass
class Service:
    """One service process with a log file (appended to across restarts) and a URL that answers 200 when ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None
    starts: int = field(default=0)
    ready_source: str | None = None  # poll readiness from this local address (a test allowlist may exclude 127.0.0.1)

    def start(self, timeout: float = 60.0) -> Service:
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Seconds until the ready URL answered 200; raises with the log's tail if it exits or never does."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode} during start; log {self.log_path}:\n"
                    f"{self.log_tail()}"
                )
            status, body = http_get(self.ready_url, source=self.ready_source)
            if status == 200:
                return time.monotonic() - t0
            last = f"{status} {body[:200]!r}" if status else "no answer"
            time.sleep(0.1)
        raise RuntimeError(
            f"{self.name} not ready within {timeout:.0f}s ({last}); log {self.log_path}:\n{self.log_tail()}"
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def url(self, path: str) -> str:
        return self.ready_url.rsplit("/", 1)[0] + path

    def pids(self) -> list[int]:
        """The process and its descendants (uvicorn's worker processes are children of the supervisor)."""
        return process_tree(self.pid) if self.alive() else []

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the process group; SIGKILL it after ``timeout``. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL the whole process group: no shutdown hooks, no flush, no commit."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def running(*services: Service, timeout: float = 120.0) -> Iterator[tuple[Service, ...]]:
    """Start each in order; always stop all of them (in reverse) on the way out."""
    started: list[Service] = []
    try:
        for s in services:
            started.append(s)
            s.start(timeout)
        yield services
    finally:
        for s in reversed(started):
            s.stop()


def gateway(env: dict[str, str], log_dir: Path, name: str = "gateway", *, module: str = "gateway") -> Service:
    """``python -m gateway`` (or another module serving the same way, e.g. the benchmark's no-Kafka baseline)
    on ``BINDWATCH_PORT`` from ``env``, else a free port."""
    port = int(env.get("BINDWATCH_PORT") or free_port())
    env = {**env, "BINDWATCH_PORT": str(port), "BINDWATCH_HOST": "127.0.0.1"}
    return Service(
        name,
        [str(VENV_BIN / "python"), "-m", module],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )


def worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> Service:
    """``faust -L uvloop -A stream.app worker`` on ``BINDWATCH_WEB_PORT`` from ``env`` (else a free port), with
    its state in ``BINDWATCH_DATA_DIR`` from ``env`` (else a directory of its own under ``log_dir``)."""
    port = int(env.get("BINDWATCH_WEB_PORT") or free_port())
    env = {
        "BINDWATCH_DATA_DIR": str(log_dir / f"{name}-state"),
        **env,
        "BINDWATCH_WEB_PORT": str(port),
        "BINDWATCH_WEB_HOST": "127.0.0.1",
    }
    Path(env["BINDWATCH_DATA_DIR"]).parent.mkdir(parents=True, exist_ok=True)  # Faust makes only the last level
    return Service(
        name,
        [str(VENV_BIN / "faust"), "-L", "uvloop", "-A", "stream.app", "worker", "-l", "info"],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )


def url(service: Service, path: str) -> str:
    return service.url(path)


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out
