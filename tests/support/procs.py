"""Run the services as real processes for integration tests: start, wait until ready, stop or kill."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
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
        log = self.log_path.open("ab")
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

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} during start:\n{self.log_tail()}")
            try:
                with httpx.Client(transport=httpx.HTTPTransport(local_address=self.ready_source)) as client:
                    r = client.get(self.ready_url, timeout=2.0)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]}"
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not ready within {timeout}s ({last}):\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
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


def gateway(env: dict[str, str], log_dir: Path, name: str = "gateway") -> Service:
    port = int(env.get("BINDWATCH_PORT") or free_port())
    env = {**env, "BINDWATCH_PORT": str(port), "BINDWATCH_HOST": "127.0.0.1"}
    return Service(
        name,
        [str(VENV_BIN / "python"), "-m", "gateway"],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )


def worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> Service:
    port = int(env.get("BINDWATCH_WEB_PORT") or free_port())
    env = {
        "BINDWATCH_DATA_DIR": str(log_dir / f"{name}-state"),
        **env,
        "BINDWATCH_WEB_PORT": str(port),
        "BINDWATCH_WEB_HOST": "127.0.0.1",
    }
    return Service(
        name,
        [str(VENV_BIN / "faust"), "-A", "stream.app", "worker", "-l", "info"],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )


def url(service: Service, path: str) -> str:
    return service.ready_url.rsplit("/", 1)[0] + path
