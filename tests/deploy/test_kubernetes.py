"""k8s/: every overlay builds, validates against the Kubernetes API schema, agrees with the code, is hardened."""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from typing import Any

import pytest

from stream.admin import topic_specs
from stream.config import StreamSettings
from tests.deploy import k8s_checks
from tests.deploy.support import KUSTOMIZE, OVERLAYS, ROOT, WORKER, settings_from_env

Rendered = dict[str, list[dict[str, Any]]]


def test_kustomize_is_the_pinned_version() -> None:
    pinned = re.search(r"^KUSTOMIZE_VERSION=(\S+)", (ROOT / "scripts" / "install-tools.sh").read_text(), re.M)
    assert pinned is not None
    out = subprocess.run([str(KUSTOMIZE), "version"], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == pinned.group(1)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_every_service(rendered: Rendered, overlay: str) -> None:
    kinds = Counter(o["kind"] for o in rendered[overlay])
    assert kinds["Deployment"] == 2  # gateway, console
    assert kinds["StatefulSet"] == 1
    assert kinds["HorizontalPodAutoscaler"] == 1
    assert kinds["PodDisruptionBudget"] == 2
    assert kinds["Service"] == 3  # gateway, stream (queries), stream-headless (peers)
    assert kinds["ConfigMap"] == 3
    assert kinds["ServiceAccount"] == 1
    assert kinds["NetworkPolicy"] >= 4
    assert kinds["Secret"] == 0


@pytest.mark.parametrize("version", k8s_checks.K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_objects_validate_against_the_kubernetes_schema(rendered: Rendered, overlay: str, version: str) -> None:
    assert k8s_checks.schema_problems(rendered[overlay], version) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_manifests_agree_with_the_code_and_pods_are_hardened(
    rendered: Rendered, served: dict[str, frozenset[str]], overlay: str
) -> None:
    assert k8s_checks.semantic_problems(rendered[overlay], served) == []


def test_dev_creates_topics_with_the_job_and_prod_with_strimzi(rendered: Rendered) -> None:
    dev_jobs = [o for o in rendered["dev"] if o["kind"] == "Job"]
    assert [j["spec"]["template"]["spec"]["containers"][0]["command"] for j in dev_jobs] == [
        ["python", "-m", "stream.admin", "create-topics"]
    ]
    prod_topics = [o for o in rendered["prod"] if o["kind"] == "KafkaTopic"]
    assert {o["spec"]["topicName"] for o in prod_topics} == {t.name for t in topic_specs(StreamSettings())}
    assert not any(o["kind"] == "KafkaTopic" for o in rendered["dev"])


def test_every_pod_is_checked_for_hardening(rendered: Rendered) -> None:
    # The hardening check covers each workload kind the overlays render (so none escapes it).
    kinds = {w.obj["kind"] for objs in rendered.values() for w in k8s_checks.workloads(objs)}
    assert kinds == {"Deployment", "StatefulSet", "Job"}
    containers = [c for objs in rendered.values() for w in k8s_checks.workloads(objs) for c in w.containers()]
    # dev: gateway, worker, console, topics job; prod: gateway, worker, console (Strimzi makes the topics)
    assert len(containers) == 7 and all(k8s_checks.is_bindwatch(c) for c in containers)


def test_prod_uses_an_immutable_tag_and_more_replicas_than_dev(rendered: Rendered) -> None:
    def pick(overlay: str, kind: str) -> dict[str, Any]:
        return next(o for o in rendered[overlay] if o["kind"] == kind)

    prod_image = pick("prod", "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert re.fullmatch(r".+/bindwatch:\d+\.\d+\.\d+", prod_image)
    assert (
        pick("prod", "HorizontalPodAutoscaler")["spec"]["minReplicas"]
        > pick("dev", "HorizontalPodAutoscaler")["spec"]["minReplicas"]
    )
    assert pick("prod", "StatefulSet")["spec"]["replicas"] > pick("dev", "StatefulSet")["spec"]["replicas"]


def test_prod_is_set_for_a_three_broker_cluster_and_worker_loss(rendered: Rendered) -> None:
    """docs/deployment.md, "Production settings": replication 3 with min.insync.replicas 2 on every topic and
    changelog, one standby per table partition (a worker lost with its disk is replaced in ~13 s instead of ~30 s
    at 1,000,000 events), static membership, one pod at a time."""

    def stream_settings(overlay: str) -> StreamSettings:
        cm = next(
            o for o in rendered[overlay] if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "bindwatch-stream"
        )
        s, error = settings_from_env(WORKER, cm["data"])
        assert error is None and isinstance(s, StreamSettings), error
        return s

    prod, dev = stream_settings("prod"), stream_settings("dev")
    assert (prod.replication_factor, prod.min_isr(), prod.standby_replicas) == (3, 2, 1)
    assert (dev.replication_factor, dev.min_isr(), dev.standby_replicas) == (1, 1, 0)
    topics = [o for o in rendered["prod"] if o["kind"] == "KafkaTopic"]
    assert topics and all(
        (t["spec"]["replicas"], str(t["spec"]["config"]["min.insync.replicas"])) == (3, "2") for t in topics
    )
    for overlay in OVERLAYS:
        sts = next(o for o in rendered[overlay] if o["kind"] == "StatefulSet")
        env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["BINDWATCH_GROUP_INSTANCE_ID"]["value"] == "$(POD_NAME)"
        budgets = {o["metadata"]["name"]: o["spec"] for o in rendered[overlay] if o["kind"] == "PodDisruptionBudget"}
        assert budgets["bindwatch-stream"]["maxUnavailable"] == 1
        assert budgets["bindwatch-gateway"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_sets_its_connection_limit_and_deadlines(rendered: Rendered, overlay: str) -> None:
    """The cluster's runtime decides the open-files limit, so the manifests name the connection limit they assume
    (and docs/deployment.md the nofile it needs) rather than trusting an automatic figure from an unknown limit."""
    cm = next(
        o
        for o in rendered[overlay]
        if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("bindwatch-gateway")
    )
    assert int(cm["data"]["BINDWATCH_MAX_CONNECTIONS"]) > 0
    assert float(cm["data"]["BINDWATCH_REQUEST_TIMEOUT_SECONDS"]) <= 30
    assert float(cm["data"]["BINDWATCH_IDLE_CONNECTION_TIMEOUT_SECONDS"]) <= 30
