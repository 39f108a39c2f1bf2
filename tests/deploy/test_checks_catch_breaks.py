"""The checkers are real: each test breaks a copy of the real files in one place and expects that exact report.

(The unbroken files pass the same checkers in test_kubernetes.py, test_compose.py and test_image.py.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy import compose_checks, image_checks, k8s_checks
from tests.deploy.support import ROOT

Objs = list[dict[str, Any]]


def obj(objs: Objs, kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name)


def container(objs: Objs, kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = obj(objs, kind, name)["spec"]["template"]["spec"]["containers"][0]
    return found


def gateway(objs: Objs) -> dict[str, Any]:
    return container(objs, "Deployment", "bindwatch-gateway")


def worker(objs: Objs) -> dict[str, Any]:
    return container(objs, "StatefulSet", "bindwatch-stream")


def console(objs: Objs) -> dict[str, Any]:
    return container(objs, "Deployment", "bindwatch-console")


def console_egress(objs: Objs) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = obj(objs, "NetworkPolicy", "bindwatch-console")["spec"]["egress"]
    return rules


def env_entry(c: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(e for e in c["env"] if e["name"] == name)
    return found


def rename_key(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


K8S_BREAKS: dict[str, tuple[str, Callable[[Objs], object], str]] = {
    "configmap key renamed": (
        "prod",
        lambda o: rename_key(
            obj(o, "ConfigMap", "bindwatch-stream")["data"], "BINDWATCH_PARTITIONS", "BINDWATCH_PARTITION"
        ),
        "BINDWATCH_PARTITION is not read by StreamSettings",
    ),
    "gateway-only setting given to the worker": (
        "prod",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_PORT="8080"),
        "BINDWATCH_PORT is not read by StreamSettings",
    ),
    "prefix typo": (
        "dev",
        lambda o: gateway(o)["env"].append({"name": "BINDWACH_PORT", "value": "8081"}),
        "BINDWACH_PORT is set but neither a setting nor used",
    ),
    "value the settings reject": (
        "dev",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_PARTITIONS="eight"),
        "StreamSettings rejects this environment",
    ),
    "readiness path not served": (
        "prod",
        lambda o: gateway(o)["readinessProbe"]["httpGet"].update(path="/ready"),
        "readinessProbe path '/ready' is not served by the gateway",
    ),
    "liveness on the wrong endpoint": (
        "prod",
        lambda o: worker(o)["livenessProbe"]["httpGet"].update(path="/readyz"),
        "livenessProbe should use /healthz",
    ),
    "probe on the wrong port": (
        "prod",
        lambda o: worker(o)["livenessProbe"]["httpGet"].update(port=8080),
        "livenessProbe port 8080 is not the worker's port 6066",
    ),
    "worker moved to another port, probes not": (
        "dev",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_WEB_PORT="7077"),
        "readinessProbe port 'web' is not the worker's port 7077",
    ),
    "scrape annotation on the wrong port": (
        "prod",
        lambda o: obj(o, "Deployment", "bindwatch-gateway")["spec"]["template"]["metadata"]["annotations"].update(
            {"prometheus.io/port": "9090"}
        ),
        "prometheus.io/port '9090' != 8080",
    ),
    "root filesystem writable": (
        "prod",
        lambda o: worker(o)["securityContext"].pop("readOnlyRootFilesystem"),
        "readOnlyRootFilesystem must be true",
    ),
    "runs as root": (
        "dev",
        lambda o: (
            gateway(o)["securityContext"].pop("runAsUser"),
            obj(o, "Deployment", "bindwatch-gateway")["spec"]["template"]["spec"]["securityContext"].update(
                runAsUser=0
            ),
        ),
        "runAsUser must be a numeric non-root uid, got 0",
    ),
    "privilege escalation allowed": (
        "dev",
        lambda o: container(o, "Job", "bindwatch-topics")["securityContext"].update(allowPrivilegeEscalation=True),
        "allowPrivilegeEscalation must be false",
    ),
    "capabilities kept": (
        "prod",
        lambda o: worker(o)["securityContext"]["capabilities"].update(drop=["NET_RAW"]),
        "capabilities must drop ALL",
    ),
    "no seccomp profile": (
        "prod",
        lambda o: (
            gateway(o)["securityContext"].pop("seccompProfile"),
            obj(o, "Deployment", "bindwatch-gateway")["spec"]["template"]["spec"]["securityContext"].pop(
                "seccompProfile"
            ),
        ),
        "seccompProfile must be RuntimeDefault",
    ),
    "no memory limit": (
        "prod",
        lambda o: worker(o)["resources"]["limits"].pop("memory"),
        "resources.limits lacks ['memory']",
    ),
    "service account token mounted": (
        "prod",
        lambda o: obj(o, "StatefulSet", "bindwatch-stream")["spec"]["template"]["spec"].pop(
            "automountServiceAccountToken"
        ),
        "automountServiceAccountToken must be false",
    ),
    "/tmp not writable": (
        "dev",
        lambda o: gateway(o).pop("volumeMounts"),
        "/tmp must be an emptyDir",
    ),
    "canonical URL through the load-balanced Service": (
        "prod",
        lambda o: env_entry(worker(o), "BINDWATCH_CANONICAL_URL").update(
            value="http://$(POD_NAME).bindwatch-stream.$(POD_NAMESPACE).svc:6066"
        ),
        "'bindwatch-stream' must be a headless Service",
    ),
    "canonical URL without the pod name": (
        "prod",
        lambda o: env_entry(worker(o), "BINDWATCH_CANONICAL_URL").update(value="http://bindwatch-stream:6066"),
        "BINDWATCH_CANONICAL_URL must be http://$(POD_NAME)",
    ),
    "RocksDB outside the volume": (
        "prod",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_DATA_DIR="/data"),
        "BINDWATCH_DATA_DIR /data is not a volumeClaimTemplate mount",
    ),
    "too little time to commit": (
        "prod",
        lambda o: obj(o, "StatefulSet", "bindwatch-stream")["spec"]["template"]["spec"].update(
            terminationGracePeriodSeconds=10
        ),
        "terminationGracePeriodSeconds < 60",
    ),
    "more workers than partitions": (
        "prod",
        lambda o: obj(o, "StatefulSet", "bindwatch-stream")["spec"].update(replicas=9),
        "9 replicas but only 8 partitions",
    ),
    "KafkaTopic partitions differ from the settings": (
        "prod",
        lambda o: obj(o, "KafkaTopic", "bindwatch-events")["spec"].update(partitions=12),
        "KafkaTopic nxcloud.binding-failures.v1: partitions/replicas 12/3, stream.admin wants 8/3",
    ),
    "KafkaTopic missing": (
        "prod",
        lambda o: o.remove(obj(o, "KafkaTopic", "bindwatch-ticks-dids")),
        "KafkaTopic for bindwatch-stream.ticks.dids is missing",
    ),
    "KafkaTopic for another cluster": (
        "prod",
        lambda o: obj(o, "KafkaTopic", "bindwatch-dlq")["metadata"]["labels"].update({"strimzi.io/cluster": "other"}),
        "not in the cluster/namespace of KAFKA_BOOTSTRAP_SERVERS",
    ),
    "topics job with other partitions": (
        "dev",
        lambda o: (
            container(o, "Job", "bindwatch-topics")
            .setdefault("env", [])
            .append({"name": "BINDWATCH_PARTITIONS", "value": "16"})
        ),
        "partitions 16 differs from the workers'",
    ),
    "unknown module": (
        "prod",
        lambda o: gateway(o).update(command=["python", "-m", "gateways"]),
        "`python -m gateways`: no such runnable module",
    ),
    "unknown admin command": (
        "dev",
        lambda o: container(o, "Job", "bindwatch-topics").update(
            command=["python", "-m", "stream.admin", "create-topic"]
        ),
        "has no command 'create-topic'",
    ),
    "push tokens written into the manifest": (
        "prod",
        lambda o: gateway(o).update(env=[{"name": "BINDWATCH_PUSH_TOKENS", "value": "s3cret"}]),
        "BINDWATCH_PUSH_TOKENS must come from a secretKeyRef",
    ),
    "console tokens written into the manifest": (
        "prod",
        lambda o: console(o).update(env=[{"name": "BINDWATCH_CONSOLE_TOKENS", "value": "s3cret"}]),
        "BINDWATCH_CONSOLE_TOKENS must come from a secretKeyRef",
    ),
    "console without its tokens": (
        "dev",
        lambda o: console(o).pop("env"),
        "BINDWATCH_CONSOLE_TOKENS must come from a secretKeyRef",
    ),
    "gateway open to everyone": (
        "prod",
        lambda o: obj(o, "NetworkPolicy", "bindwatch-gateway")["spec"]["ingress"][0].pop("from"),
        "opens port 8080 to every source",
    ),
    "workers cannot reach each other": (
        "prod",
        lambda o: obj(o, "NetworkPolicy", "bindwatch-stream")["spec"]["ingress"].pop(0),
        "workers cannot reach each other on 6066",
    ),
    "workers cannot call each other": (
        "prod",
        lambda o: obj(o, "NetworkPolicy", "bindwatch-stream")["spec"]["egress"].pop(1),
        "workers cannot reach each other on 6066",
    ),
    "no default deny for the gateway": (
        "prod",
        lambda o: [
            p["spec"].update(policyTypes=["Ingress"])
            for p in o
            if p["kind"] == "NetworkPolicy" and p["metadata"]["name"] in ("bindwatch-gateway", "bindwatch-default-deny")
        ],
        "Deployment/bindwatch-gateway: not isolated by NetworkPolicies for Ingress and Egress",
    ),
    "Kafka unreachable": (
        "dev",
        lambda o: obj(o, "NetworkPolicy", "bindwatch-topics")["spec"]["egress"][0]["ports"][0].update(port=9093),
        "Job/bindwatch-topics: no NetworkPolicy lets it reach Kafka on port 9092",
    ),
    "latest image": (
        "prod",
        lambda o: [
            c.update(image="registry.example.com/bindwatch:latest")
            for w in k8s_checks.workloads(o)
            for c in w.containers()
        ],
        "never latest",
    ),
    "Service to the wrong port": (
        "prod",
        lambda o: obj(o, "Service", "bindwatch-stream")["spec"]["ports"][0].update(targetPort=8080),
        "Service/bindwatch-stream: targetPort 8080 is not",
    ),
    "console scaled out": (
        "prod",
        lambda o: obj(o, "Deployment", "bindwatch-console")["spec"].update(replicas=2),
        "the console runs as exactly 1 replica",
    ),
    "console rolled instead of replaced": (
        "dev",
        lambda o: obj(o, "Deployment", "bindwatch-console")["spec"].update(strategy={"type": "RollingUpdate"}),
        "use strategy Recreate",
    ),
    "console readiness on a path it does not serve": (
        "prod",
        lambda o: console(o)["readinessProbe"]["httpGet"].update(path="/ready"),
        "readinessProbe path '/ready' is not served by the console",
    ),
    "console liveness on the worker's port": (
        "dev",
        lambda o: console(o)["livenessProbe"]["httpGet"].update(port=6066),
        "livenessProbe port 6066 is not the console's port 8081",
    ),
    "console cannot reach Alertmanager": (
        "prod",
        lambda o: console_egress(o).pop(1),
        "no NetworkPolicy lets it reach Alertmanager",
    ),
    "console without Alertmanager": (
        "dev",
        lambda o: obj(o, "ConfigMap", "bindwatch-console")["data"].update(BINDWATCH_ALERTMANAGER_URLS=""),
        "BINDWATCH_ALERTMANAGER_URLS is empty",
    ),
    "console writable root": (
        "prod",
        lambda o: console(o)["securityContext"].update(readOnlyRootFilesystem=False),
        "container console: readOnlyRootFilesystem must be true",
    ),
    "console setting misspelt": (
        "prod",
        lambda o: rename_key(
            obj(o, "ConfigMap", "bindwatch-console")["data"],
            "BINDWATCH_ALERTMANAGER_RESEND_SECONDS",
            "BINDWATCH_ALERTMANAGER_RESEND",
        ),
        "BINDWATCH_ALERTMANAGER_RESEND is not read by ConsoleSettings",
    ),
    "console port not open to Prometheus": (
        "prod",
        lambda o: obj(o, "NetworkPolicy", "bindwatch-console")["spec"]["ingress"][0]["ports"][0].update(port=8080),
        "no NetworkPolicy lets anything reach port 8081",
    ),
    "writes acknowledged by one replica of three": (
        "prod",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_MIN_INSYNC_REPLICAS="1"),
        "min.insync.replicas 1 with replication factor 3",
    ),
    "writes refused while one broker is down": (
        "prod",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_MIN_INSYNC_REPLICAS="3"),
        "one broker down refuses writes",
    ),
    "every worker pod under one static member id": (
        "prod",
        lambda o: env_entry(worker(o), "BINDWATCH_GROUP_INSTANCE_ID").update(value="bindwatch-stream"),
        "BINDWATCH_GROUP_INSTANCE_ID must be built from $(POD_NAME)",
    ),
    "static member id from the ConfigMap, where $(POD_NAME) is not expanded": (
        "prod",
        lambda o: (
            worker(o)["env"].remove(env_entry(worker(o), "BINDWATCH_GROUP_INSTANCE_ID")),
            obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_GROUP_INSTANCE_ID="$(POD_NAME)"),
        ),
        "BINDWATCH_GROUP_INSTANCE_ID must be built from $(POD_NAME)",
    ),
    "a standby with no other worker to live on": (
        "dev",
        lambda o: obj(o, "ConfigMap", "bindwatch-stream")["data"].update(BINDWATCH_STANDBY_REPLICAS="1"),
        "BINDWATCH_STANDBY_REPLICAS=1 needs more than 1 workers",
    ),
    "disruption budget evicting a partition's active and standby together": (
        "prod",
        lambda o: obj(o, "PodDisruptionBudget", "bindwatch-stream")["spec"].update(maxUnavailable=2),
        "maxUnavailable 2; at most 1 worker(s) may be evicted at once",
    ),
    "no disruption budget for the workers": (
        "prod",
        lambda o: o.remove(obj(o, "PodDisruptionBudget", "bindwatch-stream")),
        "no PodDisruptionBudget covers the workers",
    ),
}


@pytest.mark.parametrize("case", list(K8S_BREAKS))
def test_k8s_break_is_reported(rendered: dict[str, Objs], served: dict[str, frozenset[str]], case: str) -> None:
    overlay, breaks, expected = K8S_BREAKS[case]
    objs = copy.deepcopy(rendered[overlay])
    breaks(objs)
    problems = k8s_checks.semantic_problems(objs, served)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (lambda o: gateway(o).update(imagePullPolicyy="Always"), "'imagePullPolicyy' was unexpected"),
        (lambda o: obj(o, "StatefulSet", "bindwatch-stream")["spec"].update(replicas="4"), "'4' is not of type"),
        (lambda o: worker(o)["ports"][0].pop("containerPort"), "'containerPort' is a required property"),
        (lambda o: obj(o, "KafkaTopic", "bindwatch-alerts")["spec"].update(partition=8), "'partition' was unexpected"),
        (lambda o: obj(o, "KafkaTopic", "bindwatch-alerts")["metadata"].pop("labels"), "'labels' is a required"),
        (lambda o: o.append({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}), "Widget"),
    ],
)
def test_schema_break_is_reported(rendered: dict[str, Objs], breaks: Callable[[Objs], object], expected: str) -> None:
    objs = copy.deepcopy(rendered["prod"])
    breaks(objs)
    problems = k8s_checks.schema_problems(objs, k8s_checks.K8S_VERSIONS[0])
    assert any(expected in p for p in problems), problems


def service(doc: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["services"][name]
    return found


COMPOSE_BREAKS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "env var renamed": (
        lambda d: rename_key(service(d, "stream")["environment"], "BINDWATCH_WEB_PORT", "BINDWATCH_WEBPORT"),
        "BINDWATCH_WEBPORT is not read by StreamSettings",
    ),
    "push tokens given to the worker": (
        lambda d: service(d, "stream")["environment"].update(BINDWATCH_PUSH_TOKENS="t"),
        "BINDWATCH_PUSH_TOKENS is not read by StreamSettings",
    ),
    "healthcheck path not served": (
        lambda d: service(d, "stream")["healthcheck"].update(
            test=["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/ready')"]
        ),
        "healthcheck path '/ready' is not served by the worker",
    ),
    "healthcheck on the wrong port": (
        lambda d: service(d, "gateway")["environment"].update(BINDWATCH_PORT="8081"),
        "healthcheck port 8080 is not the gateway's port 8081",
    ),
    "published port not the listening one": (
        lambda d: service(d, "gateway").update(ports=["8080:8000"]),
        "publishes container port 8000",
    ),
    "gateway listening on loopback": (
        lambda d: service(d, "gateway")["environment"].update(BINDWATCH_HOST="127.0.0.1"),
        "listens on 127.0.0.1 only",
    ),
    "Kafka version differs from scripts/KAFKA_VERSION": (
        lambda d: service(d, "kafka").update(image="apache/kafka:4.3.0"),
        "is not apache/kafka:4.4.0",
    ),
    "Kafka healthcheck that asks nothing": (
        lambda d: service(d, "kafka")["healthcheck"].update(test=["CMD", "true"]),
        "healthcheck must ask the broker",
    ),
    "bootstrap address the broker does not advertise": (
        lambda d: service(d, "gateway")["environment"].update(KAFKA_BOOTSTRAP_SERVERS="localhost:9092"),
        "is no listener the Kafka service advertises",
    ),
    "topics and workers disagree": (
        lambda d: service(d, "topics")["environment"].update(BINDWATCH_PARTITIONS="16"),
        "topics and workers disagree on partitions",
    ),
    "worker starts before the topics exist": (
        lambda d: service(d, "stream")["depends_on"]["topics"].update(condition="service_started"),
        "service_completed_successfully",
    ),
    "topics before Kafka is healthy": (
        lambda d: service(d, "topics")["depends_on"]["kafka"].update(condition="service_started"),
        "must wait for kafka (depends_on condition: service_healthy)",
    ),
    "worker that never restarts": (lambda d: service(d, "stream").update(restart="no"), "restart policy 'no'"),
    "canonical URL naming another service": (
        lambda d: service(d, "stream-2")["environment"].update(BINDWATCH_CANONICAL_URL="http://stream:6066"),
        "must be http://stream-2:6066",
    ),
    "state not on a volume": (
        lambda d: service(d, "stream").pop("volumes"),
        "BINDWATCH_DATA_DIR /var/lib/bindwatch is not on a named volume",
    ),
    "writable container": (lambda d: service(d, "gateway").pop("read_only"), "must be read_only"),
    "unknown command": (
        lambda d: service(d, "stream").update(command=["faust", "-A", "stream.ap", "worker"]),
        "faust app module 'stream.ap' does not exist",
    ),
    "console posts to a service that is no Alertmanager": (
        lambda d: service(d, "console")["environment"].update(BINDWATCH_ALERTMANAGER_URLS="http://prometheus:9093"),
        "Alertmanager URL http://prometheus:9093 is no prom/alertmanager service",
    ),
    "console posts to the wrong Alertmanager port": (
        lambda d: service(d, "console")["environment"].update(BINDWATCH_ALERTMANAGER_URLS="http://alertmanager:9094"),
        "http://alertmanager:9094: alertmanager listens on 9093",
    ),
    "console healthcheck on the gateway's port": (
        lambda d: service(d, "console")["healthcheck"].update(
            test=["CMD", "curl", "-f", "http://127.0.0.1:8080/readyz"]
        ),
        "healthcheck port 8080 is not the console's port 8081",
    ),
    "no console": (lambda d: d["services"].pop("console"), "no console service"),
    "Alertmanager not the tested version": (
        lambda d: service(d, "alertmanager").update(image="prom/alertmanager:v0.27.0"),
        "is not prom/alertmanager:v0.35.0",
    ),
    "Alertmanager without the shipped configuration": (
        lambda d: service(d, "alertmanager").update(volumes=["alertmanager-data:/alertmanager"]),
        "deploy/alertmanager/alertmanager.yml is not mounted at /etc/alertmanager/alertmanager.yml",
    ),
    "console writable": (
        lambda d: service(d, "console").update(read_only=False),
        "docker-compose.yml service console: must be read_only",
    ),
}


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (lambda c: c["inhibit_rules"].pop(0), "none mutes per-number alerts during a binding_outage"),
        (lambda c: c["route"].update(group_by=["alertname"]), "group_by must be [rule, severity]"),
        (lambda c: c["route"].update(group_by=["rule", "severity", "team2"]), "group_by 'team2' is no label"),
        (lambda c: c["inhibit_rules"][0].update(equal=["outage_id"]), "'outage_id' is no label the console sets"),
        (lambda c: c["route"]["routes"][0].update(matchers=['kind="outage"']), "matcher on 'kind'"),
        (lambda c: c["receivers"][0].pop("webhook_configs"), "no webhook receiver"),
    ],
)
def test_alertmanager_config_break_is_reported(breaks: Callable[[dict[str, Any]], None], expected: str) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    assert compose_checks.alertmanager_config_problems(config) == []
    breaks(config)
    problems = compose_checks.alertmanager_config_problems(config)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("case", list(COMPOSE_BREAKS))
def test_compose_break_is_reported(compose: dict[str, Any], served: dict[str, frozenset[str]], case: str) -> None:
    breaks, expected = COMPOSE_BREAKS[case]
    doc = copy.deepcopy(compose)
    breaks(doc)
    problems = compose_checks.compose_problems(doc, served)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("targets", "path", "expected"),
    [
        (["gateway:6066", "stream:6066"], "/metrics", "gateway:6066: the gateway listens on 8080"),
        (["gateway:8080"], "/metrics", "prometheus does not scrape stream"),
        (["gateway:8080", "stream:6066", "kafka:9092"], "/metrics", "kafka:9092 is no bindwatch service"),
        (["gateway:8080", "stream:6066"], "/stats", "/stats is not served by the gateway"),
    ],
)
def test_prometheus_break_is_reported(
    compose: dict[str, Any],
    served: dict[str, frozenset[str]],
    tmp_path: Path,
    targets: list[str],
    path: str,
    expected: str,
) -> None:
    config = tmp_path / "prometheus.yml"
    job = {"job_name": "all", "metrics_path": path, "static_configs": [{"targets": targets}]}
    config.write_text(yaml.safe_dump({"scrape_configs": [job]}))
    doc = copy.deepcopy(compose)
    service(doc, "prometheus").update(volumes=[f"{config}:/etc/prometheus/prometheus.yml:ro"])
    problems = compose_checks.compose_problems(doc, served)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    ("breaks", "expected"),
    [
        (lambda d: service(d, "gateway").update(helthcheck={}), "'helthcheck' does not match"),
        (lambda d: service(d, "stream").update(stop_grace_period="one minute"), "is not a 'duration'"),
        (lambda d: service(d, "gateway").update(ports=["8080:eighty"]), "is not valid under any of the given schemas"),
        (
            lambda d: service(d, "topics")["depends_on"]["kafka"].update(condition="healthy"),
            "services.topics.depends_on: {'kafka': {'condition': 'healthy'}} is not valid",
        ),
    ],
)
def test_compose_schema_break_is_reported(
    compose: dict[str, Any], breaks: Callable[[dict[str, Any]], None], expected: str
) -> None:
    doc = copy.deepcopy(compose)
    breaks(doc)
    problems = compose_checks.schema_problems(doc)
    assert any(expected in p for p in problems), problems


DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERIGNORE = (ROOT / ".dockerignore").read_text()


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("USER 10001:10001", "USER root", "must be a numeric non-root uid"),
        ("USER 10001:10001", "USER 0", "must be a numeric non-root uid"),
        ("--constraint requirements/lock.txt", "", "installed from requirements/lock.txt"),
        ("install --no-deps --build-constraint", "install --build-constraint", "--no-deps ."),
        ("WORKDIR /tmp\n", "WORKDIR /tmp\nRUN apt-get update && apt-get install -y gcc\n", "installs or builds"),
        ('CMD ["python", "-m", "gateway"]', "CMD python -m gateway", "CMD must be the gateway in exec form"),
        ("ARG PYTHON_IMAGE=python:3.11-slim-bookworm", "ARG PYTHON_IMAGE=python:3.11", "slim Python 3.11"),
        ("BINDWATCH_WEB_HOST=0.0.0.0", "BINDWATCH_WEBHOST=0.0.0.0", "ENV BINDWATCH_WEBHOST is not read"),
        ("EXPOSE 8080 6066", "EXPOSE 8080", "EXPOSE lacks the worker's port 6066"),
        ("COPY --from=build /opt/bindwatch /opt/bindwatch", "", "must COPY --from"),
    ],
)
def test_dockerfile_break_is_reported(old: str, new: str, expected: str) -> None:
    assert old in DOCKERFILE
    problems = image_checks.dockerfile_problems(DOCKERFILE.replace(old, new))
    assert any(expected in p for p in problems), problems


def test_single_stage_dockerfile_is_reported() -> None:
    runtime = DOCKERFILE[DOCKERFILE.index("FROM ${PYTHON_IMAGE} AS runtime") :]
    assert image_checks.dockerfile_problems("ARG PYTHON_IMAGE=python:3.11-slim\n" + runtime) == [
        "Dockerfile: must be multi-stage (build, then a runtime stage)"
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("!gateway/**\n", "", "excludes gateway/__init__.py"),
        ("!requirements/lock.txt\n", "", "excludes requirements/lock.txt"),
        ("*\n", "", ".venv/bin/python would be sent"),
        ("**/__pycache__\n**/*.pyc\n", "", "__pycache__/app.cpython-311.pyc would be sent"),
    ],
)
def test_dockerignore_break_is_reported(old: str, new: str, expected: str) -> None:
    assert old in DOCKERIGNORE
    problems = image_checks.dockerignore_problems(DOCKERFILE, DOCKERIGNORE.replace(old, new, 1))
    assert any(expected in p for p in problems), problems


def test_unpinned_or_drifted_package_is_reported() -> None:
    closure = image_checks.dependency_closure(["bindwatch"])
    closure["fastapi"] = "0.1.0"
    closure["not-in-the-lock"] = "1.0"
    problems = image_checks.pin_problems(closure)
    assert problems == [
        f"fastapi 0.1.0 is installed but the lock file pins {image_checks.lock_pins()['fastapi']}",
        "not-in-the-lock 1.0 is installed but not pinned in the lock file",
    ]
