"""Checks for rendered Kubernetes manifests (the output of ``kustomize build``). Each returns problems.

``schema_problems`` validates against the Kubernetes API schema (offline, strict); ``semantic_problems``
checks that the manifests agree with the code and that every pod is hardened.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import SchemaNotFoundError

from stream.admin import topic_specs
from stream.config import StreamSettings
from tests.deploy.image_checks import image_env
from tests.deploy.support import (
    CONSOLE,
    GATEWAY,
    TOPICS,
    WORKER,
    Role,
    command_problems,
    env_name_problems,
    role_of,
    settings_from_env,
)

# The oldest Kubernetes these manifests are meant for, and the newest schema kubernetes-validate ships.
K8S_VERSIONS = ("1.30.0", "1.37.0")
STRIMZI_API_VERSIONS = ("kafka.strimzi.io/v1beta2", "kafka.strimzi.io/v1")
POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job")
_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

# The fields of Strimzi's KafkaTopic CRD (packaging/install/cluster-operator/043-Crd-kafkatopic.yaml):
# CRDs are not in the core API schema, so this is checked on its own (unknown spec fields are errors here).
KAFKA_TOPIC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"enum": list(STRIMZI_API_VERSIONS)},
        "kind": {"const": "KafkaTopic"},
        "metadata": {
            "type": "object",
            "required": ["name", "labels"],
            "properties": {
                "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"},
                "namespace": {"type": "string"},
                "labels": {
                    "type": "object",
                    "required": ["strimzi.io/cluster"],
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "spec": {
            "type": "object",
            "required": ["partitions", "replicas"],
            "additionalProperties": False,
            "properties": {
                "topicName": {"type": "string", "minLength": 1},
                "partitions": {"type": "integer", "minimum": 1},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                "config": {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean"]}},
            },
        },
    },
}


def name_of(obj: Mapping[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def schema_problems(objs: Iterable[Mapping[str, Any]], version: str) -> list[str]:
    """Strict validation (unknown fields are errors) against the Kubernetes API schema of ``version``."""
    problems = []
    for obj in objs:
        where = name_of(obj)
        if str(obj.get("apiVersion", "")).startswith("kafka.strimzi.io/"):
            for err in jsonschema.Draft202012Validator(KAFKA_TOPIC_SCHEMA).iter_errors(obj):
                problems.append(f"{where}: {'.'.join(map(str, err.absolute_path))}: {err.message}")
            continue
        try:
            kubernetes_validate.validate(dict(obj), version, strict=True)
        except kubernetes_validate.ValidationError as err:
            problems.append(f"{where} (Kubernetes {version}): {'.'.join(map(str, err.path))}: {err.message}")
        except SchemaNotFoundError as err:
            problems.append(f"{where}: {err.message}")
    return problems


# ---- workloads and their containers ---------------------------------------------------------------------


@dataclass
class Workload:
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        return name_of(self.obj)

    @property
    def pod(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.obj["spec"]["template"].get("spec", {})
        return spec

    @property
    def labels(self) -> dict[str, str]:
        labels: dict[str, str] = self.obj["spec"]["template"].get("metadata", {}).get("labels", {})
        return labels

    @property
    def annotations(self) -> dict[str, str]:
        notes: dict[str, str] = self.obj["spec"]["template"].get("metadata", {}).get("annotations", {})
        return notes

    def containers(self) -> list[dict[str, Any]]:
        return [*self.pod.get("initContainers", []), *self.pod.get("containers", [])]


def workloads(objs: Iterable[dict[str, Any]]) -> list[Workload]:
    return [Workload(o) for o in objs if o.get("kind") in POD_KINDS]


def image_repository(image: str) -> str:
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    return image[:colon] if colon > slash else image


def is_bindwatch(container: Mapping[str, Any]) -> bool:
    return image_repository(str(container.get("image", ""))).rsplit("/", 1)[-1] == "bindwatch"


def by_kind(objs: Iterable[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o.get("kind") == kind}


@dataclass
class ContainerEnv:
    values: dict[str, str]  # what the program sees (downward API and Secrets as stand-ins)
    raw: dict[str, dict[str, Any]]  # the env entries as written
    referenced: set[str]  # names used as $(NAME)
    problems: list[str]


def container_env(c: Mapping[str, Any], configmaps: Mapping[str, dict[str, Any]], where: str) -> ContainerEnv:
    values: dict[str, str] = {}
    raw: dict[str, dict[str, Any]] = {}
    problems = []
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            cm = configmaps.get(source["configMapRef"]["name"])
            if cm is None:
                problems.append(f"{where}: envFrom names ConfigMap {source['configMapRef']['name']!r}, not rendered")
                continue
            for key, value in (cm.get("data") or {}).items():
                values[source.get("prefix", "") + key] = str(value)
        else:
            problems.append(f"{where}: envFrom {sorted(source)} cannot be checked; name each variable")
    for entry in c.get("env", []):
        name = entry["name"]
        raw[name] = entry
        if "value" in entry:
            values[name] = _REF.sub(lambda m: values.get(m.group(1), m.group(0)), str(entry["value"]))
            continue
        ref = entry.get("valueFrom", {})
        if "fieldRef" in ref:
            values[name] = {"metadata.name": "pod-0", "metadata.namespace": "namespace"}.get(
                ref["fieldRef"]["fieldPath"], "field"
            )
        elif "secretKeyRef" in ref:
            values[name] = "secret-value"
        elif "configMapKeyRef" in ref:
            cm = configmaps.get(ref["configMapKeyRef"]["name"], {})
            values[name] = str((cm.get("data") or {}).get(ref["configMapKeyRef"]["key"], ""))
        else:
            values[name] = "resource"
    texts = [str(e.get("value", "")) for e in c.get("env", [])] + c.get("command", []) + c.get("args", [])
    referenced = {m.group(1) for t in texts for m in _REF.finditer(t)}
    return ContainerEnv(values, raw, referenced, problems)


def port_number(c: Mapping[str, Any], port: int | str) -> int | None:
    if isinstance(port, int):
        return port
    for p in c.get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    return None


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# ---- the checks -----------------------------------------------------------------------------------------


@dataclass
class Container:
    workload: Workload
    spec: dict[str, Any]
    role: Role
    env: ContainerEnv
    settings: Any

    @property
    def where(self) -> str:
        return f"{self.workload.where} container {self.spec.get('name')}"

    @property
    def port(self) -> int | None:
        return getattr(self.settings, self.role.port_field) if self.role.port_field and self.settings else None


def bindwatch_containers(objs: list[dict[str, Any]]) -> tuple[list[Container], list[str]]:
    configmaps = by_kind(objs, "ConfigMap")
    found, problems = [], []
    for w in workloads(objs):
        for c in w.containers():
            if not is_bindwatch(c):
                continue
            where = f"{w.where} container {c.get('name')}"
            command = [*c.get("command", []), *c.get("args", [])]
            role = role_of(command)
            problems += command_problems(command, where)
            if role is None:
                problems.append(f"{where}: cannot tell what {command!r} runs")
                continue
            env = container_env(c, configmaps, where)
            problems += env.problems
            problems += env_name_problems(role, env.values, env.referenced, where)
            settings, error = settings_from_env(role, {**image_env(), **env.values})
            if error:
                problems.append(f"{where}: {role.settings_cls.__name__} rejects this environment: {error}")
            found.append(Container(w, c, role, env, settings))
    return found, problems


def probe_problems(ct: Container, served: Mapping[str, frozenset[str]]) -> list[str]:
    problems: list[str] = []
    c, role = ct.spec, ct.role
    if not role.long_running or ct.port is None:
        return problems
    paths = served[role.name]
    if ct.port not in [p.get("containerPort") for p in c.get("ports", [])]:
        problems.append(f"{ct.where}: no containerPort {ct.port}, the port the {role.name} listens on")
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": None}
    for kind, want in expected.items():
        probe = c.get(kind)
        if probe is None:
            if want is not None:
                problems.append(f"{ct.where}: no {kind}")
            continue
        http = probe.get("httpGet")
        if http is None:
            problems.append(f"{ct.where}: {kind} is not an HTTP probe")
            continue
        port = port_number(c, http.get("port", ""))
        if port != ct.port:
            problems.append(f"{ct.where}: {kind} port {http.get('port')!r} is not the {role.name}'s port {ct.port}")
        path = http.get("path", "/")
        if path not in paths:
            problems.append(f"{ct.where}: {kind} path {path!r} is not served by the {role.name} ({sorted(paths)})")
        elif want is not None and path != want:
            problems.append(f"{ct.where}: {kind} should use {want}, not {path}")
    notes = ct.workload.annotations
    if notes.get("prometheus.io/scrape") == "true":
        if notes.get("prometheus.io/port") != str(ct.port):
            problems.append(f"{ct.workload.where}: prometheus.io/port {notes.get('prometheus.io/port')!r} != {ct.port}")
        if notes.get("prometheus.io/path", "/metrics") not in paths:
            problems.append(f"{ct.workload.where}: prometheus.io/path {notes.get('prometheus.io/path')!r} not served")
    return problems


def hardening_problems(w: Workload) -> list[str]:
    """Every container: non-root, read-only root, no privilege escalation, no capabilities, seccomp, limits."""
    pod, where = w.pod, w.where
    psc = pod.get("securityContext", {})
    problems = []
    if pod.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}: automountServiceAccountToken must be false")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(flag):
            problems.append(f"{where}: {flag} must not be set")
    tmp_volumes = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for c in w.containers():
        cw = f"{where} container {c.get('name')}"
        sc = c.get("securityContext", {})

        def effective(key: str, sc: dict[str, Any] = sc) -> Any:
            return sc.get(key, psc.get(key))

        if effective("runAsNonRoot") is not True:
            problems.append(f"{cw}: runAsNonRoot must be true")
        uid = effective("runAsUser")
        if not isinstance(uid, int) or uid == 0:
            problems.append(f"{cw}: runAsUser must be a numeric non-root uid, got {uid!r}")
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{cw}: readOnlyRootFilesystem must be true")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{cw}: allowPrivilegeEscalation must be false")
        if sc.get("privileged"):
            problems.append(f"{cw}: privileged must not be set")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []) or caps.get("add"):
            problems.append(f"{cw}: capabilities must drop ALL and add none")
        if (effective("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{cw}: seccompProfile must be RuntimeDefault")
        res = c.get("resources", {})
        for part in ("requests", "limits"):
            missing = {"cpu", "memory"} - set(res.get(part, {}))
            if missing:
                problems.append(f"{cw}: resources.{part} lacks {sorted(missing)}")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        if mounts.get("/tmp") not in tmp_volumes:
            problems.append(f"{cw}: /tmp must be an emptyDir (the root filesystem is read-only)")
        if w.obj["kind"] != "Job":
            for probe in ("livenessProbe", "readinessProbe"):
                if probe not in c:
                    problems.append(f"{cw}: no {probe}")
    return problems


def worker_problems(ct: Container, objs: list[dict[str, Any]]) -> list[str]:
    """A worker: StatefulSet, its own DNS name as canonical URL, RocksDB on its PVC, time to commit."""
    w, s = ct.workload, ct.settings
    problems = []
    if w.obj["kind"] != "StatefulSet":
        return [f"{w.where}: workers need stable names and volumes: use a StatefulSet"]
    if int(w.pod.get("terminationGracePeriodSeconds", 30)) < 60:
        problems.append(f"{w.where}: terminationGracePeriodSeconds < 60 leaves the worker too little time to commit")
    raw = ct.env.raw.get("BINDWATCH_CANONICAL_URL", {}).get("value", "")
    m = re.fullmatch(
        r"http://\$\(POD_NAME\)\.([a-z0-9-]+)(\.\$\(POD_NAMESPACE\)\.svc(?:\.cluster\.local)?)?:(\d+)", raw
    )
    if m is None:
        problems.append(f"{ct.where}: BINDWATCH_CANONICAL_URL must be http://$(POD_NAME).<headless service>…:<port>")
    else:
        service_name, port = m.group(1), int(m.group(3))
        pod_name = ct.env.raw.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
        if pod_name != "metadata.name":
            problems.append(f"{ct.where}: POD_NAME must come from the downward API (metadata.name)")
        if m.group(2):
            ns = ct.env.raw.get("POD_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if ns != "metadata.namespace":
                problems.append(f"{ct.where}: POD_NAMESPACE must come from the downward API (metadata.namespace)")
        if service_name != w.obj["spec"].get("serviceName"):
            problems.append(f"{ct.where}: canonical URL names {service_name!r}, not the StatefulSet's serviceName")
        svc = by_kind(objs, "Service").get(service_name)
        if svc is None or svc["spec"].get("clusterIP") != "None":
            problems.append(f"{ct.where}: {service_name!r} must be a headless Service (clusterIP: None)")
        elif not selects(svc["spec"].get("selector", {}), w.labels):
            problems.append(f"{ct.where}: headless Service {service_name!r} does not select the workers")
        if port != s.web_port:
            problems.append(f"{ct.where}: canonical URL port {port} is not BINDWATCH_WEB_PORT {s.web_port}")
    claims = {t["metadata"]["name"] for t in w.obj["spec"].get("volumeClaimTemplates", [])}
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in ct.spec.get("volumeMounts", [])}
    if mounts.get(str(s.data_dir).rstrip("/")) not in claims:
        problems.append(f"{ct.where}: BINDWATCH_DATA_DIR {s.data_dir} is not a volumeClaimTemplate mount")
    replicas = int(w.obj["spec"].get("replicas", 1))
    if replicas > s.partitions:
        problems.append(f"{w.where}: {w.obj['spec']['replicas']} replicas but only {s.partitions} partitions")
    return problems + failover_problems(ct, objs, replicas)


def failover_problems(ct: Container, objs: list[dict[str, Any]], replicas: int) -> list[str]:
    """What losing a broker or a worker needs (docs/deployment.md, "Production settings"): writes on at least two
    replicas yet possible with one broker down, one static member id per pod, standbys that have a worker to live
    on, and a disruption budget that never evicts a partition's active and standby copies together."""
    w, s = ct.workload, ct.settings
    problems = []
    rf, isr = s.replication_factor, s.min_isr()
    if rf >= 3 and isr < 2:
        problems.append(f"{ct.where}: min.insync.replicas {isr} with replication factor {rf}: a write on 1 replica")
    if rf > 1 and isr >= rf:
        problems.append(
            f"{ct.where}: min.insync.replicas {isr} = replication factor {rf}: one broker down refuses writes"
        )
    # An env entry of the container: Kubernetes expands $(POD_NAME) there, never in a ConfigMap's values.
    gid = str(ct.env.raw.get("BINDWATCH_GROUP_INSTANCE_ID", {}).get("value", ""))
    if "$(POD_NAME)" not in gid:
        problems.append(
            f"{ct.where}: BINDWATCH_GROUP_INSTANCE_ID must be built from $(POD_NAME) (static membership, one id "
            f"per pod; members sharing an id fence each other), not {gid!r}"
        )
    if s.standby_replicas and s.standby_replicas >= replicas:
        problems.append(
            f"{w.where}: BINDWATCH_STANDBY_REPLICAS={s.standby_replicas} needs more than {replicas} workers"
        )
    budgets = [
        b
        for b in by_kind(objs, "PodDisruptionBudget").values()
        if selects(b["spec"].get("selector", {}).get("matchLabels", {}), w.labels)
    ]
    if not budgets:
        problems.append(f"{w.where}: no PodDisruptionBudget covers the workers")
    for b in budgets:
        most = b["spec"].get("maxUnavailable")
        if not isinstance(most, int) or most > max(1, s.standby_replicas):
            problems.append(
                f"PodDisruptionBudget/{b['metadata']['name']}: maxUnavailable {most!r}; at most "
                f"{max(1, s.standby_replicas)} worker(s) may be evicted at once (BINDWATCH_STANDBY_REPLICAS="
                f"{s.standby_replicas})"
            )
    return problems


def console_problems(ct: Container, objs: list[dict[str, Any]]) -> list[str]:
    """The console: one replica (it reads the whole topic and posts everything), replaced not rolled, and let
    out to every Alertmanager it posts to."""
    w, s = ct.workload, ct.settings
    problems = []
    if w.obj["kind"] != "Deployment":
        problems.append(f"{w.where}: the console is a Deployment")
    if int(w.obj["spec"].get("replicas", 1)) != 1:
        problems.append(f"{w.where}: the console runs as exactly 1 replica, not {w.obj['spec'].get('replicas')}")
    if (w.obj["spec"].get("strategy") or {}).get("type") != "Recreate":
        problems.append(f"{w.where}: use strategy Recreate (never two consoles during an update)")
    if not s.alertmanager_urls:
        problems.append(f"{ct.where}: BINDWATCH_ALERTMANAGER_URLS is empty, so no alert reaches anyone")
    policies = list(by_kind(objs, "NetworkPolicy").values())
    mine = [p for p in policies if selects(p["spec"].get("podSelector", {}).get("matchLabels", {}), w.labels)]
    egress = [r for p in mine for r in p["spec"].get("egress", [])]
    for url in s.alertmanager_urls:
        port = urlsplit(url).port or (443 if url.startswith("https") else 80)
        if not any(r.get("to") and _allows(r, port) for r in egress):
            problems.append(f"{ct.where}: no NetworkPolicy lets it reach Alertmanager {url} (port {port})")
    return problems


def service_problems(objs: list[dict[str, Any]], containers: list[Container]) -> list[str]:
    problems = []
    for name, svc in by_kind(objs, "Service").items():
        chosen = [ct for ct in containers if selects(svc["spec"].get("selector", {}), ct.workload.labels)]
        if not chosen:
            problems.append(f"Service/{name}: selects no bindwatch pod")
        for ct in chosen:
            for p in svc["spec"].get("ports", []):
                if port_number(ct.spec, p.get("targetPort", p["port"])) != ct.port:
                    problems.append(f"Service/{name}: targetPort {p.get('targetPort')!r} is not {ct.where}'s {ct.port}")
    return problems


def topics_problems(objs: list[dict[str, Any]], containers: list[Container]) -> list[str]:
    """Topic creation (Job or Strimzi KafkaTopics) agrees with the workers' settings."""
    workers = [ct.settings for ct in containers if ct.role is WORKER and ct.settings]
    jobs = [ct for ct in containers if ct.role is TOPICS and ct.settings]
    kafka_topics = [o for o in objs if o.get("kind") == "KafkaTopic"]
    if not workers:
        return ["no stream worker is rendered"]
    s: StreamSettings = workers[0]
    problems = []
    if not jobs and not kafka_topics:
        problems.append("nothing creates the topics: add the topics-job or strimzi-topics component")
    keys = ("kafka_bootstrap_servers", "app_id", "partitions", "replication_factor", "events_topic", "by_did_topic")
    for ct in jobs:
        for key in keys:
            if getattr(ct.settings, key) != getattr(s, key):
                problems.append(f"{ct.where}: {key} {getattr(ct.settings, key)!r} differs from the workers'")
    if kafka_topics:
        wanted = {t.name: t for t in topic_specs(s)}
        have = {o["spec"].get("topicName", o["metadata"]["name"]): o for o in kafka_topics}
        for name in sorted(set(wanted) - set(have)):
            problems.append(f"KafkaTopic for {name} is missing")
        for name in sorted(set(have) - set(wanted)):
            problems.append(f"KafkaTopic {name} is not a bindwatch topic")
        host = s.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[0]
        m = re.fullmatch(r"([a-z0-9-]+)-kafka-bootstrap\.([a-z0-9-]+)\.svc(?:\.cluster\.local)?", host)
        for name in sorted(set(wanted) & set(have)):
            t, o = wanted[name], have[name]
            spec = o["spec"]
            config = {k: str(v) for k, v in (spec.get("config") or {}).items()}
            if (spec.get("partitions"), spec.get("replicas")) != (t.num_partitions, t.replication_factor):
                problems.append(
                    f"KafkaTopic {name}: partitions/replicas {spec.get('partitions')}/{spec.get('replicas')}, "
                    f"stream.admin wants {t.num_partitions}/{t.replication_factor}"
                )
            if config != dict(t.topic_configs):
                problems.append(f"KafkaTopic {name}: config {config} != {t.topic_configs}")
            if m and (o["metadata"].get("labels", {}).get("strimzi.io/cluster"), o["metadata"].get("namespace")) != (
                m.group(1),
                m.group(2),
            ):
                problems.append(f"KafkaTopic {name}: not in the cluster/namespace of KAFKA_BOOTSTRAP_SERVERS {host}")
    return problems


def _allows(rule: Mapping[str, Any], port: int) -> bool:
    """Does a NetworkPolicy rule allow this port (a rule without ports allows all)?"""
    return not rule.get("ports") or any(p.get("port") == port for p in rule["ports"])


def _peers(rule: Mapping[str, Any], side: str, labels: Mapping[str, str]) -> bool:
    """Does the rule's from/to list name pods with these labels in the same namespace?"""
    return any(
        "namespaceSelector" not in peer and selects(peer.get("podSelector", {}).get("matchLabels", {}), labels)
        for peer in rule.get(side, [])
    )


def network_problems(objs: list[dict[str, Any]], containers: list[Container]) -> list[str]:
    """Each pod is isolated both ways; its port is open to named sources only; Kafka and peers are reachable."""
    policies = list(by_kind(objs, "NetworkPolicy").values())
    problems = []
    for ct in containers:
        where, labels = ct.workload.where, ct.workload.labels
        mine = [p for p in policies if selects(p["spec"].get("podSelector", {}).get("matchLabels", {}), labels)]
        if {t for p in mine for t in p["spec"].get("policyTypes", [])} != {"Ingress", "Egress"}:
            problems.append(f"{where}: not isolated by NetworkPolicies for Ingress and Egress")
        ingress = [r for p in mine for r in p["spec"].get("ingress", [])]
        egress = [r for p in mine for r in p["spec"].get("egress", [])]
        if ct.port is not None:
            open_rules = [r for r in ingress if _allows(r, ct.port)]
            if not open_rules:
                problems.append(f"{where}: no NetworkPolicy lets anything reach port {ct.port}")
            if any(not r.get("from") for r in open_rules):
                problems.append(f"{where}: a NetworkPolicy opens port {ct.port} to every source")
        if ct.role is WORKER and ct.port is not None:
            routed_in = any(_allows(r, ct.port) and _peers(r, "from", labels) for r in ingress)
            routed_out = any(_allows(r, ct.port) and _peers(r, "to", labels) for r in egress)
            if not (routed_in and routed_out):
                problems.append(f"{where}: workers cannot reach each other on {ct.port} (query routing)")
        if ct.settings is not None:
            kafka_port = int(ct.settings.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
            if not any(r.get("to") and _allows(r, kafka_port) for r in egress):
                problems.append(f"{where}: no NetworkPolicy lets it reach Kafka on port {kafka_port}")
    return problems


def image_problems(containers: list[Container]) -> list[str]:
    images = {ct.spec["image"] for ct in containers}
    problems = [f"bindwatch containers run different images: {sorted(images)}"] if len(images) > 1 else []
    for image in sorted(images):
        tag = image[len(image_repository(image)) :].lstrip(":")
        if "@" not in image and (not tag or tag == "latest"):
            problems.append(f"image {image!r}: set a tag or digest (overlay `images:`), never latest")
    return problems


def secret_problems(objs: list[dict[str, Any]], containers: list[Container]) -> list[str]:
    problems = [f"{name_of(o)}: Secrets are created by hand, never committed" for o in objs if o["kind"] == "Secret"]
    secrets = {GATEWAY.name: "BINDWATCH_PUSH_TOKENS", CONSOLE.name: "BINDWATCH_CONSOLE_TOKENS"}
    for ct in containers:
        if ct.role.name in secrets:
            name = secrets[ct.role.name]
            entry = ct.env.raw.get(name, {})
            if "secretKeyRef" not in entry.get("valueFrom", {}):
                problems.append(f"{ct.where}: {name} must come from a secretKeyRef")
    return problems


def semantic_problems(objs: list[dict[str, Any]], served: Mapping[str, frozenset[str]]) -> list[str]:
    containers, problems = bindwatch_containers(objs)
    roles = {ct.role.name for ct in containers}
    problems += [f"no {r} container is rendered" for r in (GATEWAY.name, WORKER.name, CONSOLE.name) if r not in roles]
    for w in workloads(objs):
        problems += hardening_problems(w)
    for ct in containers:
        problems += probe_problems(ct, served)
        if ct.role is WORKER and ct.settings is not None:
            problems += worker_problems(ct, objs)
        if ct.role is CONSOLE and ct.settings is not None:
            problems += console_problems(ct, objs)
    problems += service_problems(objs, [ct for ct in containers if ct.role.long_running])
    problems += topics_problems(objs, containers)
    problems += network_problems(objs, containers)
    problems += image_problems(containers)
    problems += secret_problems(objs, containers)
    return problems
