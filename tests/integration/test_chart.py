"""The Helm chart (charts/flowpod), checked with the test cluster's helm and API server.

For the default values and each file under charts/flowpod/ci/: ``helm lint --strict`` is clean,
``helm template`` matches its golden file (``FLOWPOD_UPDATE_GOLDEN=1`` rewrites them), and the
rendered manifests pass the API server's own validation (server-side apply, dry run, strict field
validation). values.schema.json refuses wrong types, and the chart refuses inconsistent values
with a message that says what to change. The operator's ServiceAccount, bound by the chart, can
read no Secret, cluster-wide or in a namespace it was given.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, CI_VALUES, documents, ensure_namespace, helm, render
from .harness import Cluster
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    OPERATOR_NAMESPACE,
    OPERATOR_SA,
    create_credentials_secret,
    operator_rbac,
)

GOLDEN_DIR = Path(__file__).resolve().parent / "golden" / "chart"
UPDATE_GOLDEN = os.environ.get("FLOWPOD_UPDATE_GOLDEN") == "1"
# A fixed password keeps renders with minio.enabled byte-for-byte repeatable.
GOLDEN_PASSWORD = {"minio.rootPassword": "golden-password-not-secret"}
VARIANTS: list[tuple[str, Path | None]] = [("default", None)] + [
    (path.stem, path) for path in CI_VALUES
]
VARIANT_IDS = [name for name, _ in VARIANTS]
# Namespaces the ci/ values files name; the dry-run apply needs them to exist.
CI_NAMESPACES = ["team-a", "team-b"]


def test_every_ci_values_file_is_covered() -> None:
    assert {"minio-values", "kind-values", "namespaced-values"} <= set(VARIANT_IDS)


@pytest.mark.parametrize(("name", "values_file"), VARIANTS, ids=VARIANT_IDS)
def test_helm_lint_is_clean(cluster: Cluster, name: str, values_file: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)]
    if values_file is not None:
        args += ["--values", str(values_file)]
    proc = helm(cluster, *args)
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(("name", "values_file"), VARIANTS, ids=VARIANT_IDS)
def test_rendered_chart_matches_its_golden_file(cluster: Cluster, name: str,
                                                values_file: Path | None) -> None:
    rendered = render(cluster, values_file=values_file, values=GOLDEN_PASSWORD).stdout
    golden = GOLDEN_DIR / f"{name}.yaml"
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(rendered)
    assert golden.is_file(), f"{golden} is missing: run the tests with FLOWPOD_UPDATE_GOLDEN=1"
    assert rendered == golden.read_text(), (
        f"helm template with {values_file or 'the default values'} differs from {golden}; if the "
        "change is intended, regenerate with FLOWPOD_UPDATE_GOLDEN=1 and review the diff"
    )


@pytest.fixture(scope="module")
def ci_namespaces(cluster: Cluster) -> Iterator[list[str]]:
    created = []
    for name in CI_NAMESPACES:
        if cluster.kubectl("get", "namespace", name, check=False).returncode != 0:
            ensure_namespace(cluster, name)
            created.append(name)
    yield CI_NAMESPACES
    for name in created:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.mark.parametrize(("name", "values_file"), VARIANTS, ids=VARIANT_IDS)
def test_rendered_manifests_pass_server_side_validation(
    cluster: Cluster, ci_namespaces: list[str], name: str, values_file: Path | None
) -> None:
    ensure_namespace(cluster, "flowpod-system")
    text = render(cluster, values_file=values_file).stdout
    kinds = {doc["kind"] for doc in documents(text)}
    assert {"Deployment", "ClusterRole", "ServiceAccount"} <= kinds
    proc = cluster.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "--force-conflicts",
        "--field-manager=chart-test", "-f", "-", input=text, check=False,
    )
    assert proc.returncode == 0, f"the API server refused the rendered chart:\n{proc.stderr}"
    # Every object was sent, none skipped.
    assert proc.stdout.count("serverside-applied (server dry run)") == len(documents(text))


def _schema_error(cluster: Cluster, values: dict[str, Any]) -> str:
    proc = render(cluster, values=values, check=False)
    assert proc.returncode != 0, f"helm accepted {values}:\n{proc.stdout[:2000]}"
    return proc.stderr


@pytest.mark.parametrize(
    ("values", "mentions"),
    [
        ({"operator.healthPort": "8080"}, "/operator/healthPort"),
        ({"operator.watchNamespaces": "team-a"}, "/operator/watchNamespaces"),
        ({"operator.watchNamespaces": ["Team_A"]}, "/operator/watchNamespaces"),
        ({"pods.runAsUser": 0}, "/pods/runAsUser"),
        ({"pods.imagePullPolicy": "Sometimes"}, "/pods/imagePullPolicy"),
        ({"ttlSecondsAfterFinished": "1h"}, "/ttlSecondsAfterFinished"),
        ({"minio.enabled": "yes"}, "/minio/enabled"),
        ({"minio.rootPassword": "short"}, "/minio/rootPassword"),
        ({"s3.bucket": 123}, "/s3/bucket"),
        ({"s3.endpoint": "minio:9000"}, "/s3/endpoint"),
        ({"operator.replicas": 2}, "replicas"),
        ({"crds": {"install": "true"}}, "/crds/install"),
    ],
    ids=lambda item: next(iter(item)) if isinstance(item, dict) else str(item),
)
def test_the_values_schema_refuses_wrong_values(cluster: Cluster, values: dict[str, Any],
                                                mentions: str) -> None:
    error = _schema_error(cluster, values)
    # helm names the offending value by its JSON pointer, e.g. at '/operator/healthPort'.
    assert "values don't meet the specifications of the schema" in error, error
    assert mentions in error, error


def test_a_run_namespace_the_operator_does_not_watch_is_refused(cluster: Cluster) -> None:
    error = _schema_error(cluster, {"operator.watchNamespaces": ["team-a"],
                                    "runNamespaces": ["team-a", "team-b"]})
    assert 'runNamespaces lists "team-b" but operator.watchNamespaces does not' in error, error


def test_minio_and_an_external_endpoint_are_refused_together(cluster: Cluster) -> None:
    error = _schema_error(cluster, {"minio.enabled": True, "s3.endpoint": "https://s3.example"})
    assert "leave s3.endpoint empty" in error, error


def _secrets(text: str) -> list[dict[str, Any]]:
    return [doc for doc in documents(text) if doc["kind"] == "Secret"]


def test_dev_minio_password_is_generated_once_per_install_and_shared(cluster: Cluster) -> None:
    values = {"minio.enabled": True, "runNamespaces": ["default", "team-a"]}
    first = _secrets(render(cluster, values=values).stdout)
    second = _secrets(render(cluster, values=values).stdout)
    assert sorted(s["metadata"]["namespace"] for s in first) == [
        "default", "flowpod-system", "team-a"]
    passwords = {base64.b64decode(s["data"]["AWS_SECRET_ACCESS_KEY"]).decode() for s in first}
    assert len(passwords) == 1, "every copy of the Secret must hold the same password"
    password = passwords.pop()
    assert len(password) == 40 and password.isalnum()
    assert base64.b64decode(second[0]["data"]["AWS_SECRET_ACCESS_KEY"]).decode() != password


def test_without_minio_or_a_secret_the_chart_writes_no_credentials(cluster: Cluster) -> None:
    docs = documents(render(cluster).stdout)
    assert not [doc for doc in docs if doc["kind"] == "Secret"]
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment")
    env = {item["name"]: item for item in deployment["spec"]["template"]["spec"]["containers"][0]
           ["env"]}
    assert "AWS_ACCESS_KEY_ID" not in env and env["FLOWPOD_OPERATOR_CREDENTIALS_SECRET"][
        "value"] == ""


# -- what the chart's operator ServiceAccount may do ----------------------------------------------


def _can_i(cluster: Cluster, verb: str, resource: str, namespace: str | None, sa: str) -> bool:
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{sa}"]
    args += [f"--subresource={subresource}"] if subresource else []
    args += ["-n", namespace] if namespace else ["--all-namespaces"]
    proc = cluster.kubectl(*args, check=False)
    return proc.stdout.strip() == "yes"


@pytest.mark.usefixtures("operator_rbac")
def test_the_operator_account_cannot_read_secrets(cluster: Cluster, namespace: str,
                                                  service_account_client: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    create_credentials_secret(cluster, namespace)
    api = client.CoreV1Api(service_account_client(OPERATOR_NAMESPACE, OPERATOR_SA, create=False))
    for call in (
        lambda: api.read_namespaced_secret("flowpod-s3", namespace),
        lambda: api.list_namespaced_secret(namespace),
        lambda: api.list_secret_for_all_namespaces(),
        lambda: api.list_namespaced_secret(OPERATOR_NAMESPACE),
    ):
        with pytest.raises(ApiException) as refused:
            call()
        assert refused.value.status == 403
    # ...while what it was granted works with the same token.
    assert api.list_namespaced_pod(namespace).items == []


def test_a_namespaced_operator_is_bound_in_its_namespaces_only(cluster: Cluster,
                                                              namespace: str) -> None:
    release = f"ns-{uuid.uuid4().hex[:6]}"
    text = render(cluster, release=release, namespace=namespace,
                  values={"operator.watchNamespaces": [namespace], "runNamespaces": [namespace],
                          "crds.install": False},
                  show_only=["operator-rbac.yaml"]).stdout
    docs = documents(text)
    assert {doc["kind"] for doc in docs} == {"ServiceAccount", "ClusterRole", "RoleBinding"}
    try:
        cluster.kubectl("apply", "-f", "-", input=text)
        sa = f"{namespace}:{release}-flowpod-operator"
        assert _can_i(cluster, "watch", "taskruns.flowpod.dev", namespace, sa)
        assert _can_i(cluster, "create", "pods", namespace, sa)
        assert _can_i(cluster, "patch", "flowruns.flowpod.dev/status", namespace, sa)
        assert not _can_i(cluster, "watch", "taskruns.flowpod.dev", "default", sa)
        assert not _can_i(cluster, "create", "pods", "default", sa)
        assert not _can_i(cluster, "watch", "taskruns.flowpod.dev", None, sa)
        assert not _can_i(cluster, "get", "secrets", namespace, sa)
    finally:
        cluster.kubectl("delete", "clusterrole", f"{release}-flowpod-operator",
                        "--ignore-not-found")


@pytest.mark.parametrize(("name", "values_file"), VARIANTS, ids=VARIANT_IDS)
def test_the_operator_reads_the_settings_the_chart_writes(cluster: Cluster, name: str,
                                                          values_file: Path | None) -> None:
    from flowpod_operator.settings import OperatorConfig

    docs = documents(render(cluster, values_file=values_file, values=GOLDEN_PASSWORD).stdout)
    deployment = next(doc for doc in docs if doc["kind"] == "Deployment"
                      and doc["metadata"]["name"].endswith("-operator"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item.get("value", "") for item in container["env"]}
    config = OperatorConfig.from_env(env)  # raises on anything it cannot read
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    assert config.namespaces == tuple(values.get("operator", {}).get("watchNamespaces", []))
    assert config.ttl_seconds == values.get("ttlSecondsAfterFinished")
    assert config.storage.create_bucket == values.get("minio", {}).get("enabled", False)
    pods = values.get("pods", {})
    assert config.run_as_user == pods.get("runAsUser", 1000)
    assert config.pod_defaults.node_selector == (pods.get("nodeSelector") or None)
    assert config.flow_service_account == values.get("flowRunner", {}).get(
        "serviceAccountName", "flowpod-flow-runner")
    assert config.task_service_account == values.get("taskRunner", {}).get(
        "serviceAccountName", "flowpod-task-runner")
    # Secrets only by reference: no credential is ever a literal in the Deployment.
    for item in container["env"]:
        if item["name"].startswith("AWS_"):
            assert "valueFrom" in item and "value" not in item, item
