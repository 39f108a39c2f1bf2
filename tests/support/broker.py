"""Where the integration tests get a real Kafka broker, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` if set (an existing broker; nothing is started or stopped);
2. testcontainers with the ``apache/kafka`` image when a Docker engine answers;
3. the project's own ``scripts/kafka.sh`` (Apache Kafka from Maven Central, run on Java).

If none can be had, the tests *fail* with the reason: they are never skipped.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "kafka.sh"
KAFKA_VERSION = (ROOT / "scripts" / "KAFKA_VERSION").read_text().strip()


class BrokerUnavailable(RuntimeError):
    pass


@dataclass
class LocalBroker:
    """A broker run by scripts/kafka.sh on its own port and data directory; it can be stopped and paused."""

    port: int
    controller_port: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "BINDWATCH_KAFKA_PORT": str(self.port),
            "BINDWATCH_KAFKA_CONTROLLER_PORT": str(self.controller_port),
            **self.env,
        }
        return subprocess.run(
            ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        r = self._run("start")
        if r.returncode != 0:
            raise BrokerUnavailable(f"scripts/kafka.sh start failed:\n{r.stdout}\n{r.stderr}")

    def stop(self) -> None:
        self._run("stop", timeout=90)

    def wipe(self) -> None:
        self._run("wipe", timeout=90)

    def pause(self) -> None:
        self._run("pause", timeout=30)

    def resume(self) -> None:
        self._run("resume", timeout=30)

    def pid(self) -> int | None:
        """The broker's JVM (for CPU sampling), while scripts/kafka.sh runs it."""
        pidfile = ROOT / ".kafka" / f"run-{self.port}" / "kafka.pid"
        return int(pidfile.read_text().strip()) if pidfile.exists() else None

    def log_tail(self, lines: int = 40) -> str:
        log = ROOT / ".kafka" / f"run-{self.port}" / "kafka.log"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


@dataclass
class LocalCluster:
    """Three KRaft nodes (each broker+controller) run by ``BINDWATCH_KAFKA_NODES=3 scripts/kafka.sh`` on ports
    ``port``, ``port+2``, ``port+4`` (controllers on the odd ports after each); node ids are 1, 2, 3."""

    port: int
    nodes: int = 3

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.port + 2 * i}" for i in range(self.nodes))

    def _run(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "BINDWATCH_KAFKA_PORT": str(self.port), "BINDWATCH_KAFKA_NODES": str(self.nodes)}
        env.pop("BINDWATCH_KAFKA_CONTROLLER_PORT", None)
        r = subprocess.run(
            ["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        return r

    def start(self) -> None:
        r = self._run("start")
        if r.returncode != 0:
            raise BrokerUnavailable(f"scripts/kafka.sh start (3 nodes) failed:\n{r.stdout}\n{r.stderr}")

    def stop(self) -> None:
        self._run("stop", timeout=120)

    def wipe(self) -> None:
        self._run("wipe", timeout=120)

    def pause(self) -> None:
        self._run("pause", timeout=30)

    def resume(self) -> None:
        self._run("resume", timeout=30)

    def node(self, action: str, node: int) -> None:
        """``action`` one of start, stop, kill, pause, resume, for node 1..nodes."""
        r = self._run(f"node-{action}", str(node))
        if r.returncode != 0 and action == "start":
            raise BrokerUnavailable(f"node {node} did not start:\n{r.stdout}\n{r.stderr}")


@dataclass
class ProvidedBroker:
    bootstrap: str
    source: str
    local: LocalBroker | None = None
    container: Any = None

    def close(self) -> None:
        if self.local is not None:
            self.local.stop()
        if self.container is not None:
            self.container.stop()


def _docker_answers() -> bool:
    # Ask docker-py only when its Unix socket is there: its UnixHTTPConnection.connect leaves the socket open when
    # connect() fails (docker 7.2), and the ResourceWarning surfaces in whichever test the garbage collector runs
    # in, as an error (warnings are errors).
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            client.ping()
        finally:
            client.close()
        return True
    except Exception:
        return False


def _container() -> ProvidedBroker:
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs

    port = 9092
    c = (
        DockerContainer(f"apache/kafka:{KAFKA_VERSION}")
        .with_bind_ports(port, 29092)
        .with_env("KAFKA_NODE_ID", "1")
        .with_env("KAFKA_PROCESS_ROLES", "broker,controller")
        .with_env("KAFKA_LISTENERS", f"PLAINTEXT://:{port},CONTROLLER://:9093")
        .with_env("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://127.0.0.1:29092")
        .with_env("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER")
        .with_env("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093")
        .with_env("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR", "1")
        .with_env("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")
    )
    c.start()
    wait_for_logs(c, "Kafka Server started", timeout=120)
    return ProvidedBroker("127.0.0.1:29092", f"testcontainers apache/kafka:{KAFKA_VERSION}", container=c)


def provide(port: int = 19192) -> ProvidedBroker:
    env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if env:
        return ProvidedBroker(env, "KAFKA_BOOTSTRAP_SERVERS")
    errors = []
    if _docker_answers():
        try:
            return _container()
        except Exception as exc:  # fall through to the local script, and report both if it fails too
            errors.append(f"testcontainers: {exc!r}")
    local = LocalBroker(port, port + 1)
    try:
        local.wipe()
        local.start()
    except (BrokerUnavailable, OSError, subprocess.TimeoutExpired) as exc:
        errors.append(f"scripts/kafka.sh: {exc}")
        raise BrokerUnavailable(
            "no Kafka broker for the integration tests: KAFKA_BOOTSTRAP_SERVERS is not set, no Docker engine "
            "answered, and the local broker could not start.\n" + "\n".join(errors)
        ) from exc
    return ProvidedBroker(local.bootstrap, f"scripts/kafka.sh (Apache Kafka {KAFKA_VERSION}, JVM)", local=local)
