"""helm/cadenza checked offline: `helm lint`, `helm template` for several value sets, every
rendered manifest validated against the Kubernetes schemas (kubernetes-validate) and the
KEDA/ServiceMonitor schemas (tests/helm/schemas), and what the chart promises asserted on
the rendered objects. helm is built from the Go module proxy once and cached
(`cadenza infra tool helm`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from .conftest import Render, helm_run

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cadenza"
SCHEMAS = Path(__file__).parent / "schemas"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest known.
KUBE_VERSIONS = ["1.27.0", kubernetes_validate.utils.latest_version()]
VALUE_SETS = ["default", "keda", "external-secrets"]
KEDA_API = "keda.sh/v1alpha1/ScaledObject"

# A cold Go build of helm takes minutes; afterwards these checks take seconds.
pytestmark = pytest.mark.timeout(1800)


def values(name: str) -> list[str]:
    return ["-f", str(CHART / "ci" / f"{name}-values.yaml")]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def validate(doc: dict[str, Any]) -> None:
    if doc["kind"] == "ScaledObject":
        schema = json.loads((SCHEMAS / "keda-scaledobject.json").read_text())
        jsonschema.validate(doc, schema)
        for trigger in doc["spec"]["triggers"]:
            if trigger["type"] == "kafka":
                jsonschema.validate(trigger["metadata"], schema["$defs"]["kafkaMetadata"])
    elif doc["kind"] == "ServiceMonitor":
        jsonschema.validate(doc, json.loads((SCHEMAS / "servicemonitor.json").read_text()))
    elif doc["kind"] == "PrometheusRule":
        jsonschema.validate(doc, json.loads((SCHEMAS / "prometheusrule.json").read_text()))
    else:
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_strict(helm: Path, value_set: str) -> None:
    proc = helm_run(helm, "lint", "--strict", str(CHART), *values(value_set))
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("keda", [False, True], ids=["plain", "keda-api"])
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_manifest_is_valid(render: Render, value_set: str, keda: bool) -> None:
    docs = render(*values(value_set), *(["--api-versions", KEDA_API] if keda else []))
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget"} <= kinds
    for doc in docs:
        validate(doc)


def test_a_validator_that_rejects_bad_manifests() -> None:
    """The checks above can fail: a typo'd field and a numeric KEDA metadata value."""
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"prots": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[-1], strict=True)
    schema = json.loads((SCHEMAS / "keda-scaledobject.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"lagThreshold": 20}, schema["properties"]["spec"]["properties"]
                            ["triggers"]["items"]["properties"]["metadata"])  # fmt: skip


def test_defaults_every_service_hardened_and_probed(render: Render) -> None:
    docs = render(*values("default"))
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    assert set(deployments) == {f"rel-cadenza-{s}" for s in
                                ("gateway", "orchestrator", "worker", "rag-ingest", "trigger")}  # fmt: skip
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        (container,) = pod["containers"]
        service = name.removeprefix("rel-cadenza-")
        assert container["args"] == [service]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert {"livenessProbe", "startupProbe"} <= container.keys(), name
        assert container["resources"]["requests"], name
        assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp"}
        env_from = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert env_from == {"rel-cadenza-config", "rel-cadenza-secrets"}
    gateway = deployments["rel-cadenza-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # Without KEDA in the cluster: an HPA on CPU scales the workers, which have no fixed count.
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-cadenza-worker"
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert "replicas" not in deployments["rel-cadenza-worker"]["spec"]
    assert not by_kind(docs, "ScaledObject")
    # One rag-ingest on its volume (embedded Qdrant), never two at once.
    rag = deployments["rel-cadenza-rag-ingest"]["spec"]
    assert (rag["replicas"], rag["strategy"]["type"]) == (1, "Recreate")
    assert by_kind(docs, "PersistentVolumeClaim")
    pdbs = {d["metadata"]["name"] for d in by_kind(docs, "PodDisruptionBudget")}
    assert pdbs == {f"rel-cadenza-{s}" for s in ("gateway", "orchestrator", "worker", "trigger")}
    # Only this release's pods reach rag-ingest's search API (it trusts X-Tenant-Id).
    policy = one(docs, "NetworkPolicy", "rel-cadenza-rag-ingest")
    search_rule, metrics_rule = policy["spec"]["ingress"]
    assert search_rule["ports"] == [{"port": "search", "protocol": "TCP"}]
    assert search_rule["from"] == [{"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "cadenza", "app.kubernetes.io/instance": "rel"}}}]  # fmt: skip
    assert "from" not in metrics_rule
    # The gateway's Service and no Ingress unless asked for.
    assert one(docs, "Service", "rel-cadenza-gateway")["spec"]["ports"][0]["port"] == 8080
    assert not by_kind(docs, "Ingress")


def test_migration_job_is_a_hook_that_runs_before_pods(render: Render) -> None:
    docs = render(*values("default"))
    job = one(docs, "Job", "rel-cadenza-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["migrate"]
    # It runs before the release's ConfigMap, Secret and ServiceAccount exist: it carries
    # the settings itself and its own hook-scoped Secret, created first.
    config = one(docs, "ConfigMap", "rel-cadenza-config")["data"]
    assert env_of(container) == config
    secret = one(docs, "Secret", "rel-cadenza-migrate")
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        annotations["helm.sh/hook-weight"]
    )
    assert container["envFrom"] == [{"secretRef": {"name": "rel-cadenza-migrate"}}]
    assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_keda_scales_workers_on_the_task_ready_lag(render: Render) -> None:
    docs = render(*values("keda"))
    (scaled,) = by_kind(docs, "ScaledObject")
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "rel-cadenza-worker"
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (1, 24)
    (trigger,) = scaled["spec"]["triggers"]
    config = one(docs, "ConfigMap", "rel-cadenza-config")["data"]
    # The trigger watches exactly the topic and group the workers consume.
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["topic"] == "prod.task.ready"
    assert trigger["metadata"]["consumerGroup"] == config["CADENZA_WORKER_CONSUMER_GROUP"]
    assert trigger["metadata"]["bootstrapServers"] == config["CADENZA_BUS_BOOTSTRAP_SERVERS"]
    assert trigger["metadata"]["lagThreshold"] == "10"
    assert config["CADENZA_BUS_TOPIC_PREFIX"] == "prod."
    # mode auto picks KEDA only where the cluster serves its API.
    auto = render(*values("default"), "--api-versions", KEDA_API)
    assert by_kind(auto, "ScaledObject")
    assert not by_kind(auto, "HorizontalPodAutoscaler")
    # Observability extras of this value set.
    (monitor,) = by_kind(docs, "ServiceMonitor")
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    assert ports == {"metrics", "http"}
    # job = cadenza-<component>, the names the dashboards and alerts select.
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["relabelings"] == [
            {"sourceLabels": ["job"], "targetLabel": "job", "replacement": "cadenza-$1"}
        ]
    (rules,) = by_kind(docs, "PrometheusRule")
    assert rules["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    repo_rules = yaml.safe_load((REPO / "infra/prometheus/alerts.yml").read_text())
    assert rules["spec"]["groups"] == repo_rules["groups"], "the chart's alerts differ"
    dashboards = one(docs, "ConfigMap", "rel-cadenza-dashboards")
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    repo_dashboards = sorted((REPO / "infra/grafana/dashboards").glob("*.json"))
    assert sorted(dashboards["data"]) == [f"cadenza-{p.name}" for p in repo_dashboards]
    for path in repo_dashboards:
        assert json.loads(dashboards["data"][f"cadenza-{path.name}"]) == json.loads(
            path.read_text()
        ), f"the chart's {path.name} differs from infra/grafana/dashboards"
    (ingress,) = by_kind(docs, "Ingress")
    assert ingress["spec"]["rules"][0]["host"] == "cadenza.example.com"
    gateway = one(docs, "Deployment", "rel-cadenza-gateway")
    assert gateway["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.example.com/cadenza:0.1.0"
    )


def test_existing_secret_replaces_the_charts_secrets(render: Render) -> None:
    docs = render(*values("external-secrets"))
    assert not by_kind(docs, "Secret")
    job = one(docs, "Job", "rel-cadenza-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["envFrom"] == [{"secretRef": {"name": "cadenza-credentials"}}]
    for deployment in by_kind(docs, "Deployment"):
        (c,) = deployment["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "cadenza-credentials"}} in c["envFrom"]
        assert env_of(c)["CADENZA_LLM_PROVIDERS__OPENAI__API_KEY"] == {
            "secretKeyRef": {"name": "llm-keys", "key": "openai"}
        }
    config = one(docs, "ConfigMap", "rel-cadenza-config")["data"]
    assert config["CADENZA_RETRIEVAL_QDRANT_URL"] == "http://qdrant.vectors:6333"
    rag = one(docs, "Deployment", "rel-cadenza-rag-ingest")
    assert rag["spec"]["replicas"] == 2
    assert "strategy" not in rag["spec"]
    assert not by_kind(docs, "PersistentVolumeClaim")
    assert one(docs, "HorizontalPodAutoscaler", "rel-cadenza-worker")["spec"]["maxReplicas"] == 6


def test_orchestrator_retention_is_a_value(render: Render) -> None:
    """Off by default (every run kept); ``orchestrator.retentionDays`` sets it."""
    for args, expected in (([], "0"), (["--set", "orchestrator.retentionDays=45"], "45")):
        docs = render(*values("default"), *args)
        (c,) = one(docs, "Deployment", "rel-cadenza-orchestrator")["spec"]["template"]["spec"][
            "containers"
        ]
        assert env_of(c)["CADENZA_ORCHESTRATOR_RETENTION_DAYS"] == expected


def test_trigger_ledger_retention_is_a_value(render: Render) -> None:
    """Off by default (every ledger row kept); ``trigger.ledgerRetentionDays`` sets it."""
    for args, expected in (([], "0"), (["--set", "trigger.ledgerRetentionDays=60"], "60")):
        docs = render(*values("default"), *args)
        (c,) = one(docs, "Deployment", "rel-cadenza-trigger")["spec"]["template"]["spec"][
            "containers"
        ]
        assert env_of(c)["CADENZA_TRIGGER_LEDGER_RETENTION_DAYS"] == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "postgresql"),  # no database URL and no existing Secret
        (["--set", "worker.autoscaling.mode=kdea"], "worker/autoscaling/mode"),
        (["--set", "kafka.bootstrapServers=http://kafka"], "kafka/bootstrapServers"),
        (["--set", "kafka.partitions=0"], "kafka/partitions"),
        (["--set", "worker.autoscaling.maxReplicas=50"], "must not exceed kafka.partitions"),
        (["--set", "gateway.replica=3"], "replica"),  # a typo: unknown keys are refused
        (["--set", "s3.bucket=Bad_Bucket"], "s3/bucket"),
        (["--set", "logLevel=LOUD"], "logLevel"),
        (["--set", "orchestrator.retentionDays=-1"], "orchestrator/retentionDays"),
        (["--set", "trigger.ledgerRetentionDays=-3"], "trigger/ledgerRetentionDays"),
    ],
)
def test_bad_values_fail(helm: Path, args: list[str], message: str) -> None:
    base = [] if not args else values("default")
    proc = helm_run(helm, "template", "rel", str(CHART), *base, *args)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
