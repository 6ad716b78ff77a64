"""The chart's dashboard (ui.*), rendered with helm: off by default; when enabled, a Deployment
running `flowpod ui` with the operator's hardened pod settings, a ClusterIP Service, and its own
ServiceAccount that may read runs, pods, events and pod logs and nothing else (patch FlowRuns only
with ui.allowCancel), bound in its namespaces only; the store's credentials by reference only.

helm is the one scripts/cluster builds (its cache, at the version versions.env pins), else one on
PATH; without either the module is skipped. (The integration tier renders the same chart with the
cluster's helm, checks it against the API server and installs it: test_chart*.py.)
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "flowpod"
VERSIONS = (REPO / "scripts" / "cluster.d" / "versions.env").read_text()
RELEASE, NAMESPACE = "flowpod", "flowpod-system"
FULLNAME = "flowpod"  # the release name contains the chart's name
READ = ("get", "list", "watch")
# (apiGroup, resource, verb) the dashboard's account holds, every one of them.
READ_GRANTS = {
    *(("flowpod.dev", resource, verb) for resource in ("flowruns", "taskruns") for verb in READ),
    *(("", resource, verb) for resource in ("pods", "events") for verb in READ),
    ("", "pods/log", "get"),
}
CANCEL_GRANT = ("flowpod.dev", "flowruns", "patch")
PASSWORD = "unit-password-not-secret"


def _pinned(name: str) -> str:
    for line in VERSIONS.splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} is not pinned in versions.env")


def _find_helm() -> str | None:
    # Read at import: the suite's conftest removes FLOWPOD_* variables before each test.
    cache = Path(os.environ.get("FLOWPOD_CLUSTER_CACHE") or Path.home() / ".cache/flowpod/cluster")
    built = cache / f"helm-{_pinned('HELM_VERSION')}" / "bin" / "helm"
    return str(built) if built.is_file() else shutil.which("helm")


HELM = _find_helm()
pytestmark = pytest.mark.skipif(HELM is None, reason="no helm (scripts/cluster build makes one)")


def _helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert HELM is not None
    proc = subprocess.run([HELM, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def _template_args(values: dict[str, Any], chart: Path = CHART) -> list[str]:
    # helm assumes Kubernetes v1.20 offline, which the chart's kubeVersion refuses.
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE,
            "--kube-version", _pinned("KUBERNETES_VERSION")]
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(_helm(*_template_args(values)).stdout) if doc]


def ui_docs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs
            if doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "ui"]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [doc for doc in docs if doc["kind"] == kind
                and (name is None or doc["metadata"]["name"] == name)]
    return found


def pod_spec(docs: list[dict[str, Any]], name: str = f"{FULLNAME}-ui") -> dict[str, Any]:
    spec: dict[str, Any] = one(docs, "Deployment", name)["spec"]["template"]["spec"]
    return spec


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def namespace_args(command: list[str]) -> list[str]:
    return [command[i + 1] for i, word in enumerate(command) if word == "-n"]


def test_the_dashboard_is_off_by_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["ui"]["enabled"] is False and values["ui"]["allowCancel"] is False
    docs = render({"minio.enabled": True, "minio.rootPassword": PASSWORD})
    assert ui_docs(docs) == []
    assert not [doc for doc in docs if doc["metadata"]["name"].endswith("-ui")]


def test_enabled_it_renders_a_deployment_a_service_and_its_own_account() -> None:
    docs = ui_docs(render({"ui.enabled": True}))
    assert sorted(doc["kind"] for doc in docs) == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    assert {doc["metadata"]["name"] for doc in docs} == {f"{FULLNAME}-ui"}
    spec = pod_spec(docs)
    assert spec["serviceAccountName"] == one(docs, "ServiceAccount")["metadata"]["name"]
    # The server lists and watches through the API with this account's token.
    assert spec["automountServiceAccountToken"] is True


def test_its_account_reads_runs_pods_events_and_logs_and_nothing_else() -> None:
    role = one(ui_docs(render({"ui.enabled": True})), "ClusterRole")
    assert grants(role) == READ_GRANTS
    assert not [g for g in grants(role) if g[2] not in READ or "secrets" in g[1] or "*" in g]


@pytest.mark.parametrize("allow", [False, True], ids=["read-only", "allowCancel"])
def test_cancel_is_granted_and_turned_on_only_with_allow_cancel(allow: bool) -> None:
    docs = ui_docs(render({"ui.enabled": True, "ui.allowCancel": allow}))
    assert grants(one(docs, "ClusterRole")) == READ_GRANTS | ({CANCEL_GRANT} if allow else set())
    command = pod_spec(docs)["containers"][0]["command"]
    assert ("--allow-cancel" in command) is allow


def test_it_serves_flowpod_ui_on_every_address_behind_a_cluster_ip_service() -> None:
    docs = ui_docs(render({"ui.enabled": True, "ui.port": 9090, "ui.service.port": 8081}))
    deployment = one(docs, "Deployment")
    (container,) = pod_spec(docs)["containers"]
    assert container["command"] == ["flowpod", "ui", "--host", "0.0.0.0", "--port", "9090"]
    assert container["ports"] == [{"name": "http", "containerPort": 9090, "protocol": "TCP"}]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    service = one(docs, "Service")
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8081, "targetPort": "http", "protocol": "TCP"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "ui"  # not selected by the operator's


def test_its_pod_is_hardened_like_the_operators() -> None:
    docs = render({"ui.enabled": True})
    ui, operator = pod_spec(docs), pod_spec(docs, f"{FULLNAME}-operator")
    assert ui["securityContext"] == operator["securityContext"]
    assert ui["containers"][0]["securityContext"] == operator["containers"][0]["securityContext"]
    pod, container = ui["securityContext"], ui["containers"][0]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["readOnlyRootFilesystem"] is True
    assert container["allowPrivilegeEscalation"] is False
    assert container["capabilities"] == {"drop": ["ALL"]}
    (mount,) = [m for m in ui["containers"][0]["volumeMounts"] if m["mountPath"] == "/tmp"]
    (volume,) = [v for v in ui["volumes"] if v["name"] == mount["name"]]
    assert "emptyDir" in volume


@pytest.mark.parametrize(
    ("values", "namespaces"),
    [
        ({}, []),
        ({"operator.watchNamespaces": ["team-a", "team-b"], "runNamespaces": ["team-a"]},
         ["team-a", "team-b"]),
        ({"operator.watchNamespaces": ["team-a", "team-b"], "runNamespaces": ["team-a"],
          "ui.namespaces": ["team-b"]}, ["team-b"]),
        ({"operator.watchNamespaces": ["team-a"], "runNamespaces": ["team-a"],
          "ui.namespaces": []}, []),
    ],
    ids=["every-namespace", "the-operators", "its-own", "every-namespace-explicitly"],
)
def test_it_shows_and_is_bound_in_its_namespaces_only(values: dict[str, Any],
                                                      namespaces: list[str]) -> None:
    docs = ui_docs(render({"ui.enabled": True, **values}))
    assert namespace_args(pod_spec(docs)["containers"][0]["command"]) == namespaces
    role_bindings = [doc for doc in docs if doc["kind"] == "RoleBinding"]
    cluster_bindings = [doc for doc in docs if doc["kind"] == "ClusterRoleBinding"]
    assert [doc["metadata"]["namespace"] for doc in role_bindings] == namespaces
    assert len(cluster_bindings) == (0 if namespaces else 1)
    account = one(docs, "ServiceAccount")["metadata"]
    for binding in role_bindings + cluster_bindings:
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io",
                                      "kind": "ClusterRole", "name": f"{FULLNAME}-ui"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                        "namespace": NAMESPACE}]


def test_its_account_name_and_annotations_are_settable() -> None:
    docs = ui_docs(render({"ui.enabled": True, "ui.serviceAccount.name": "dashboard",
                           "ui.serviceAccount.annotations": {"example.com/role": "reader"}}))
    account = one(docs, "ServiceAccount")["metadata"]
    assert account["name"] == "dashboard" and account["namespace"] == NAMESPACE
    assert account["annotations"] == {"example.com/role": "reader"}
    assert pod_spec(docs)["serviceAccountName"] == "dashboard"
    assert one(docs, "ClusterRoleBinding")["subjects"][0]["name"] == "dashboard"


def test_scheduling_and_annotations_reach_its_pod() -> None:
    toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "pool", "operator": "In", "values": ["web"]}]}]}}}
    docs = ui_docs(render({"ui.enabled": True, "ui.nodeSelector": {"pool": "web"},
                           "ui.tolerations": [toleration], "ui.affinity": affinity,
                           "ui.podAnnotations": {"example.com/scrape": "false"}}))
    spec = pod_spec(docs)
    assert spec["nodeSelector"] == {"pool": "web"}
    assert spec["tolerations"] == [toleration]
    assert spec["affinity"] == affinity
    template = one(docs, "Deployment")["spec"]["template"]["metadata"]
    assert template["annotations"] == {"example.com/scrape": "false"}


@pytest.mark.parametrize(
    ("values", "secret"),
    [
        ({"s3.existingSecret": "store-credentials", "s3.endpoint": "https://s3.example",
          "s3.region": "eu-west-1", "s3.prefix": "team-a"}, "store-credentials"),
        ({"minio.enabled": True, "minio.rootPassword": PASSWORD}, f"{FULLNAME}-s3"),
        ({}, None),
    ],
    ids=["existing-secret", "dev-minio", "own-credential-chain"],
)
def test_it_reads_the_operators_store_with_secret_references_only(
    values: dict[str, Any], secret: str | None
) -> None:
    docs = render({"ui.enabled": True, **values})
    env = pod_spec(docs)["containers"][0]["env"]
    operator_env = {item["name"]: item for item in
                    pod_spec(docs, f"{FULLNAME}-operator")["containers"][0]["env"]}
    s3 = {item["name"]: item for item in env if item["name"].startswith("FLOWPOD_S3_")}
    assert set(s3) == {"FLOWPOD_S3_BUCKET", "FLOWPOD_S3_PREFIX", "FLOWPOD_S3_ENDPOINT",
                       "FLOWPOD_S3_REGION"}
    for name, item in s3.items():
        assert item == operator_env[name], name
    credentials = [item for item in env if item["name"].startswith("AWS_")]
    if secret is None:
        assert credentials == []
    else:
        assert credentials == [
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
            for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    # No credential is written into any of the dashboard's objects, plain or encoded.
    text = yaml.safe_dump_all(ui_docs(docs))
    assert PASSWORD not in text and base64.b64encode(PASSWORD.encode()).decode() not in text
    assert "Secret" not in {doc["kind"] for doc in ui_docs(docs)}


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"ui.enabled": "yes"}, "/ui/enabled"),
        ({"ui.allowCancel": "true"}, "/ui/allowCancel"),
        ({"ui.namespaces": "team-a"}, "/ui/namespaces"),
        ({"ui.namespaces": ["Team_A"]}, "/ui/namespaces"),
        ({"ui.port": 0}, "/ui/port"),
        ({"ui.service.type": "LoadBalancer"}, "/ui/service/type"),
        ({"ui.replicas": 2}, "replicas"),
    ],
    ids=lambda item: next(iter(item)) if isinstance(item, dict) else str(item),
)
def test_the_values_schema_refuses_wrong_dashboard_values(values: dict[str, Any],
                                                          mentions: str) -> None:
    proc = _helm(*_template_args({"ui.enabled": True, **values}), check=False)
    assert proc.returncode != 0, f"helm accepted {values}"
    assert "values don't meet the specifications of the schema" in proc.stderr, proc.stderr
    assert mentions in proc.stderr, proc.stderr


def test_helm_lint_is_clean_with_the_dashboard() -> None:
    proc = _helm("lint", "--strict", str(CHART), "--set", "ui.enabled=true",
                 "--set", "ui.allowCancel=true")
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def _notes(values: dict[str, Any], tmp_path: Path) -> str:
    # `helm template` leaves NOTES.txt out: a copy of the chart renders it as a YAML string.
    chart = tmp_path / "flowpod"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "notes-shown.yaml").write_text(
        'notes: {{ include "flowpod/templates/NOTES.txt" . | toJson }}\n')
    args = _template_args(values, chart) + ["--show-only", "templates/notes-shown.yaml"]
    return str(yaml.safe_load(_helm(*args).stdout)["notes"])


def test_the_notes_tell_how_to_open_the_dashboard(tmp_path: Path) -> None:
    enabled = _notes({"ui.enabled": True, "ui.service.port": 8081}, tmp_path / "on")
    forward = f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME}-ui 8080:8081"
    assert forward in enabled and "http://localhost:8080/" in enabled
    disabled = _notes({}, tmp_path / "off")
    assert "--set ui.enabled=true" in disabled
    for notes in (enabled, disabled):
        assert "pip install 'flowpod[ui]' && flowpod ui" in notes
