"""Checks for docker-compose.yml (after interpolation) and deploy/prometheus.yml. Each returns problems."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from console.config import ConsoleSettings
from console.mapping import CORE_LABELS
from gateway.config import GatewaySettings
from stream.config import StreamSettings
from tests.deploy.image_checks import image_env
from tests.deploy.support import (
    ALERTMANAGER_VERSION,
    CONSOLE,
    GATEWAY,
    KAFKA_VERSION,
    ROOT,
    TOPICS,
    WORKER,
    Role,
    command_problems,
    env_name_problems,
    role_of,
    settings_from_env,
)

COMPOSE_SCHEMA = Path(__file__).parent / "vendor" / "compose-spec.json"
LONG_RUNNING_RESTART = frozenset({"always", "unless-stopped", "on-failure"})
_GO_DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+)$")
_PORTS = re.compile(r"^((\[?[0-9a-fA-F:.]+\]?):)?((\d+)(-\d+)?:)?(\d+)(-\d+)?(/(tcp|udp|sctp))?$")

_formats = jsonschema.FormatChecker()


@_formats.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or bool(_GO_DURATION.match(value))


@_formats.checks("ports")
def _is_ports(value: object) -> bool:
    return not isinstance(value, str) or bool(_PORTS.match(value))


def schema_problems(doc: Mapping[str, Any]) -> list[str]:
    """Validate against the Compose specification's JSON schema (vendored, see vendor/README.md)."""
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema, format_checker=_formats)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(doc)]


def _env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _command(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def _healthcheck_text(service: Mapping[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or ""
    return test if isinstance(test, str) else " ".join(map(str, test))


def _depends(service: Mapping[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def is_bindwatch(service: Mapping[str, Any]) -> bool:
    image = str(service.get("image", ""))
    return "build" in service or image.split(":", 1)[0].rsplit("/", 1)[-1] == "bindwatch"


def kafka_problems(name: str, service: Mapping[str, Any]) -> list[str]:
    problems = []
    image = str(service.get("image", ""))
    if image != f"apache/kafka:{KAFKA_VERSION}":
        problems.append(f"{name}: image {image!r} is not apache/kafka:{KAFKA_VERSION} (scripts/KAFKA_VERSION)")
    if not re.search(r"/opt/kafka/bin/kafka-(topics|broker-api-versions)\.sh", _healthcheck_text(service)):
        problems.append(f"{name}: healthcheck must ask the broker (/opt/kafka/bin/kafka-broker-api-versions.sh)")
    return problems


def advertised(service: Mapping[str, Any]) -> set[str]:
    listeners = _env(service).get("KAFKA_ADVERTISED_LISTENERS", "")
    return {item.split("://", 1)[1] for item in listeners.split(",") if "://" in item}


def bindwatch_service_problems(
    name: str, service: Mapping[str, Any], doc: Mapping[str, Any], served: Mapping[str, frozenset[str]]
) -> tuple[Role | None, Any, list[str]]:
    where = f"docker-compose.yml service {name}"
    command = _command(service)
    problems = command_problems(command, where)
    role = role_of(command)
    if role is None:
        return None, None, [*problems, f"{where}: cannot tell what {command!r} runs"]
    env = _env(service)
    problems += env_name_problems(role, env, set(), where)
    settings, error = settings_from_env(role, {**image_env(), **env})
    if settings is None:
        return role, None, [*problems, f"{where}: {role.settings_cls.__name__} rejects this environment: {error}"]
    services = doc.get("services", {})
    deps = _depends(service)
    brokers = {b.strip() for b in settings.kafka_bootstrap_servers.split(",")}
    kafka = [n for n, s in services.items() if advertised(s) & brokers]
    if not kafka:
        problems.append(
            f"{where}: KAFKA_BOOTSTRAP_SERVERS {sorted(brokers)} is no listener the Kafka service advertises"
        )
    for k in kafka:
        if role is TOPICS and deps.get(k) != "service_healthy":
            problems.append(f"{where}: must wait for {k} (depends_on condition: service_healthy)")
    if service.get("read_only") is not True or "ALL" not in (service.get("cap_drop") or []):
        problems.append(f"{where}: must be read_only with cap_drop: [ALL]")
    if not any(str(o).startswith("no-new-privileges") for o in service.get("security_opt") or []):
        problems.append(f"{where}: security_opt must include no-new-privileges")
    if role is TOPICS:
        if service.get("restart", "no") not in ("no", "on-failure"):
            problems.append(f"{where}: a one-shot job must not restart forever")
        return role, settings, problems
    if service.get("restart") not in LONG_RUNNING_RESTART:
        problems.append(
            f"{where}: restart policy {service.get('restart')!r} is not one of {sorted(LONG_RUNNING_RESTART)}"
        )
    topics = [n for n, s in services.items() if is_bindwatch(s) and role_of(_command(s)) is TOPICS]
    if not any(deps.get(t) == "service_completed_successfully" for t in topics):
        problems.append(f"{where}: must wait for the topics (depends_on condition: service_completed_successfully)")
    assert role.port_field is not None
    port = getattr(settings, role.port_field)
    host = settings.host if isinstance(settings, GatewaySettings | ConsoleSettings) else settings.web_host
    if host in ("127.0.0.1", "localhost", "::1"):
        problems.append(f"{where}: listens on {host} only, so no other container can reach it")
    m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)(/[^'\" ]*)", _healthcheck_text(service))
    if m is None:
        problems.append(f"{where}: healthcheck must GET http://127.0.0.1:<port>/readyz")
    else:
        if int(m.group(1)) != port:
            problems.append(f"{where}: healthcheck port {m.group(1)} is not the {role.name}'s port {port}")
        if m.group(2) not in served[role.name]:
            problems.append(f"{where}: healthcheck path {m.group(2)!r} is not served by the {role.name}")
        elif m.group(2) != "/readyz":
            problems.append(f"{where}: healthcheck should use /readyz, not {m.group(2)}")
    for published in service.get("ports") or []:
        target = published.get("target") if isinstance(published, dict) else str(published).rsplit(":", 1)[-1]
        if int(str(target).split("/")[0]) != port:
            problems.append(f"{where}: publishes container port {target}, but the {role.name} listens on {port}")
    if role is CONSOLE and isinstance(settings, ConsoleSettings):
        problems += console_alertmanager_problems(where, settings.alertmanager_urls, services)
    if role is WORKER and isinstance(settings, StreamSettings):
        m = re.fullmatch(r"http://([a-z0-9._-]+):(\d+)", settings.canonical_url or "")
        if m is None or m.group(1) != name or int(m.group(2)) != port:
            problems.append(f"{where}: BINDWATCH_CANONICAL_URL {settings.canonical_url!r} must be http://{name}:{port}")
        named = set(doc.get("volumes") or {})
        mounts = {
            str(v).split(":")[1].rstrip("/"): str(v).split(":")[0]
            for v in service.get("volumes") or []
            if isinstance(v, str) and ":" in v
        }
        if mounts.get(settings.data_dir.rstrip("/")) not in named:
            problems.append(f"{where}: BINDWATCH_DATA_DIR {settings.data_dir} is not on a named volume")
    return role, settings, problems


def compose_problems(doc: Mapping[str, Any], served: Mapping[str, frozenset[str]]) -> list[str]:
    services: dict[str, Any] = doc.get("services", {})
    problems = []
    kafka = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}
    if len(kafka) != 1:
        problems.append(f"expected one apache/kafka service, found {sorted(kafka)}")
    for name, service in kafka.items():
        problems += kafka_problems(name, service)
        broker = re.search(r"--bootstrap-server\s+(\S+)", _healthcheck_text(service))
        if broker and broker.group(1) not in advertised(service):
            problems.append(f"{name}: healthcheck asks {broker.group(1)}, which the broker does not advertise")
    roles: dict[str, list[tuple[str, Any]]] = {}
    for name, service in services.items():
        if is_bindwatch(service):
            role, settings, found = bindwatch_service_problems(name, service, doc, served)
            problems += found
            if role is not None and settings is not None:
                roles.setdefault(role.name, []).append((name, settings))
    for needed in (GATEWAY, WORKER, TOPICS, CONSOLE):
        if needed.name not in roles:
            problems.append(f"no {needed.name} service")
    stream_side = roles.get(WORKER.name, []) + roles.get(TOPICS.name, [])
    for key in ("kafka_bootstrap_servers", "app_id", "partitions", "replication_factor"):
        values = {n: getattr(s, key) for n, s in stream_side}
        if len(set(values.values())) > 1:
            problems.append(f"topics and workers disagree on {key}: {values}")
    problems += prometheus_problems(doc, roles, served)
    problems += alertmanager_service_problems(services)
    return problems


def _flag(command: list[str], name: str, default: str) -> str:
    for word in command:
        if word.startswith(f"--{name}="):
            return word.split("=", 1)[1]
    return default


def alertmanager_port(service: Mapping[str, Any]) -> int:
    return int(_flag(_command(service), "web.listen-address", ":9093").rsplit(":", 1)[1])


def is_alertmanager(service: Mapping[str, Any]) -> bool:
    return str(service.get("image", "")).split(":", 1)[0] == "prom/alertmanager"


def console_alertmanager_problems(where: str, urls: list[str], services: Mapping[str, Any]) -> list[str]:
    """The console posts to Alertmanager services that exist, on the port they listen on."""
    if not urls:
        return [f"{where}: BINDWATCH_ALERTMANAGER_URLS is empty, so no alert reaches anyone"]
    problems = []
    for url in urls:
        m = re.fullmatch(r"http://([a-z0-9._-]+):(\d+)", url)
        target = services.get(m.group(1)) if m else None
        if m is None or target is None or not is_alertmanager(target):
            problems.append(f"{where}: Alertmanager URL {url} is no prom/alertmanager service of this file")
        elif alertmanager_port(target) != int(m.group(2)):
            problems.append(f"{where}: {url}: {m.group(1)} listens on {alertmanager_port(target)}")
    return problems


def alertmanager_service_problems(services: Mapping[str, Any]) -> list[str]:
    """Alertmanager: the version the tests run, the shipped configuration, which routes on the console's labels."""
    found = {n: s for n, s in services.items() if is_alertmanager(s)}
    if not found:
        return ["no prom/alertmanager service"]
    problems = []
    for name, service in found.items():
        image = str(service.get("image"))
        if image != f"prom/alertmanager:{ALERTMANAGER_VERSION}":
            problems.append(
                f"{name}: image {image!r} is not prom/alertmanager:{ALERTMANAGER_VERSION}, the version "
                "scripts/install-tools.sh builds for the tests"
            )
        config_file = _flag(_command(service), "config.file", "/etc/alertmanager/alertmanager.yml")
        mounted = None
        for volume in service.get("volumes") or []:
            source, _, target = str(volume).partition(":")
            if target.split(":")[0] == config_file:
                mounted = source
        if mounted != "./deploy/alertmanager/alertmanager.yml":
            problems.append(f"{name}: deploy/alertmanager/alertmanager.yml is not mounted at {config_file}")
        else:
            problems += [
                f"{name}: {p}" for p in alertmanager_config_problems(yaml.safe_load((ROOT / mounted).read_text()))
            ]
        if service.get("restart") not in LONG_RUNNING_RESTART:
            problems.append(
                f"{name}: restart policy {service.get('restart')!r} is not one of {sorted(LONG_RUNNING_RESTART)}"
            )
    return problems


def _matcher_labels(matchers: list[str]) -> set[str]:
    return {re.split(r"[=!~]", m, maxsplit=1)[0].strip() for m in matchers}


def alertmanager_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The routing and inhibition use labels the console sets (console.mapping), and an outage mutes per-number
    alerts by the ``outage`` label."""
    labels = set(CORE_LABELS)
    problems = []

    def walk(route: Mapping[str, Any], path: str) -> None:
        for label in route.get("group_by") or []:
            if label not in labels:
                problems.append(f"{path}: group_by {label!r} is no label the console sets")
        for label in _matcher_labels(route.get("matchers") or []):
            if label not in labels:
                problems.append(f"{path}: matcher on {label!r}, no label the console sets")
        for i, child in enumerate(route.get("routes") or []):
            walk(child, f"{path}.routes[{i}]")

    route = config.get("route") or {}
    walk(route, "route")
    if set(route.get("group_by") or []) != {"rule", "severity"}:
        problems.append("route: group_by must be [rule, severity]")
    outage_rule = False
    for i, rule in enumerate(config.get("inhibit_rules") or []):
        used = _matcher_labels(rule.get("source_matchers", []) + rule.get("target_matchers", []))
        used |= set(rule.get("equal") or [])
        for label in sorted(used - labels):
            problems.append(f"inhibit_rules[{i}]: {label!r} is no label the console sets")
        if 'rule="binding_outage"' in rule.get("source_matchers", []) and rule.get("equal") == ["outage"]:
            outage_rule = True
    if not outage_rule:
        problems.append("inhibit_rules: none mutes per-number alerts during a binding_outage (equal: [outage])")
    hooks = [h for r in config.get("receivers") or [] for h in r.get("webhook_configs") or []]
    if not hooks:
        problems.append("receivers: no webhook receiver")
    return problems


def prometheus_problems(
    doc: Mapping[str, Any], roles: Mapping[str, list[tuple[str, Any]]], served: Mapping[str, frozenset[str]]
) -> list[str]:
    """The monitoring profile's Prometheus scrapes every service's /metrics on the port it serves."""
    prometheus = doc.get("services", {}).get("prometheus")
    if prometheus is None:
        return ["no prometheus service (profile monitoring)"]
    problems = [] if "monitoring" in (prometheus.get("profiles") or []) else ["prometheus: not in profile monitoring"]
    config = None
    for volume in prometheus.get("volumes") or []:
        source, _, target = str(volume).partition(":")
        if target.split(":")[0] == "/etc/prometheus/prometheus.yml":
            config = yaml.safe_load((ROOT / source).read_text())
    if config is None:
        return [*problems, "prometheus: no configuration mounted at /etc/prometheus/prometheus.yml"]
    ports = {
        name: (role.name, getattr(settings, role.port_field))
        for role in (GATEWAY, WORKER, CONSOLE)
        if role.port_field
        for name, settings in roles.get(role.name, [])
    }
    scraped = set()
    for job in config.get("scrape_configs", []):
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, _, port = target.partition(":")
                if host not in ports:
                    problems.append(f"prometheus job {job['job_name']}: {target} is no bindwatch service")
                    continue
                role, want = ports[host]
                scraped.add(host)
                if int(port) != want:
                    problems.append(f"prometheus job {job['job_name']}: {target}: the {role} listens on {want}")
                if path not in served[role]:
                    problems.append(f"prometheus job {job['job_name']}: {path} is not served by the {role}")
    problems += [f"prometheus does not scrape {name}" for name in sorted(set(ports) - scraped)]
    return problems
