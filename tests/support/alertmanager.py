"""A real Prometheus Alertmanager for integration tests, a webhook listener for its notifications, and the
console as a process. The binary comes from scripts/install-tools.sh (built once into .tools/bin); when it
cannot be had the tests fail saying why, never skip.
"""

from __future__ import annotations

import copy
import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support.procs import ROOT, VENV_BIN, Service, free_port

BINARY = ROOT / ".tools" / "bin" / "alertmanager"
SHIPPED_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
TIMING_KEYS = ("group_wait", "group_interval", "repeat_interval")


class AlertmanagerUnavailable(RuntimeError):
    pass


def alertmanager_binary() -> Path:
    """The pinned Alertmanager, built by scripts/install-tools.sh on first use (a few minutes, once)."""
    r = subprocess.run(
        [str(ROOT / "scripts" / "install-tools.sh"), "alertmanager"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if r.returncode != 0 or not BINARY.exists():
        raise AlertmanagerUnavailable(
            f"scripts/install-tools.sh alertmanager failed (exit {r.returncode}); it needs Go and the Go module "
            f"proxy:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
        )
    return BINARY


def config_for_tests(webhook_url: str, timing: dict[str, str]) -> dict[str, Any]:
    """The shipped configuration with only the webhook receiver's URL and the route timings changed."""
    config: dict[str, Any] = yaml.safe_load(SHIPPED_CONFIG.read_text())
    config = copy.deepcopy(config)

    def retime(route: dict[str, Any]) -> None:
        for key in TIMING_KEYS:
            if key in route:
                route[key] = timing[key]
        for child in route.get("routes", []):
            retime(child)

    retime(config["route"])
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    return config


def config_difference(config: dict[str, Any]) -> list[str]:
    """Paths where ``config`` differs from the shipped file other than the allowed URL and timings (for a guard)."""
    shipped = yaml.safe_load(SHIPPED_CONFIG.read_text())
    out: list[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in set(a) | set(b):
                if k in TIMING_KEYS or (k == "url" and path.endswith("webhook_configs[]")):
                    continue
                walk(a.get(k), b.get(k), f"{path}.{k}")
        elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            for x, y in zip(a, b, strict=True):
                walk(x, y, f"{path}[]")
        elif a != b:
            out.append(path)

    walk(shipped, config, "")
    return out


class Alertmanager:
    """One Alertmanager process on 127.0.0.1 (no clustering), with its own storage directory."""

    def __init__(self, config: dict[str, Any], workdir: Path, name: str = "alertmanager") -> None:
        self.binary = alertmanager_binary()
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"{name}.yml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> Alertmanager:
        """Start with an empty storage directory (each start gets a new one)."""
        self.starts += 1
        storage = self.workdir / f"{self.name}-data-{self.starts}"
        storage.mkdir()
        with (self.workdir / f"{self.name}.log").open("ab") as log:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [
                    str(self.binary),
                    f"--config.file={self.config_path}",
                    f"--storage.path={storage}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--cluster.listen-address=",
                    "--log.level=info",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AlertmanagerUnavailable(f"alertmanager exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AlertmanagerUnavailable(f"alertmanager not ready within {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, lines: int = 40) -> str:
        path = self.workdir / f"{self.name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def alerts(self, **params: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=5)
        r.raise_for_status()
        out: list[dict[str, Any]] = r.json()
        return out


class Webhook:
    """An HTTP listener recording every notification Alertmanager's webhook receiver posts."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with outer._lock:
                    outer.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alertmanager"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(notification status of each alert, alert) for every alert in every notification so far."""
        with self._lock:
            return [(a["status"], a) for n in self.received for a in n["alerts"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


CONSOLE_TOKEN = "console-test-token"
"""The operators' page token the tests' consoles accept (unless a test sets ``BINDWATCH_CONSOLE_TOKENS``)."""


def console(env: dict[str, str], log_dir: Path, name: str = "console") -> Service:
    port = int(env.get("BINDWATCH_PORT") or free_port())
    env = {
        "BINDWATCH_CONSOLE_TOKENS": CONSOLE_TOKEN,
        **env,
        "BINDWATCH_PORT": str(port),
        "BINDWATCH_HOST": "127.0.0.1",
        "BINDWATCH_LOG_LEVEL": "INFO",
    }
    return Service(
        name,
        [str(VENV_BIN / "python"), "-m", "console"],
        env,
        log_dir / f"{name}.log",
        f"http://127.0.0.1:{port}/readyz",
    )
