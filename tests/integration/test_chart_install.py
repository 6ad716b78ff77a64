"""``helm install`` of charts/flowpod on the test cluster, then the README's example FlowRun.

The chart's own Deployment runs the operator on the node: the kubelet runs the image built from
this checkout with the ServiceAccount token the chart binds, the environment the chart writes
(S3 settings, the credentials Secret by reference, the watched namespace), the chart's non-root
user and read-only root filesystem, and its probes. Nothing of the operator is started by the
test itself, so a missing permission, a wrong variable or a wrong Secret reference in the chart
fails here. The same install runs the dashboard (ui.enabled): the image's `flowpod ui` as the
chart's non-root, read-only pod with its own read-only ServiceAccount, which serves the example
run once it finished. ``helm uninstall`` then removes the release and keeps the CRDs and the runs
(crds.keep); before that, ``helm upgrade`` replaces the operator pod with one running the new
settings.
"""

from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import CHART, helm, set_json_args
from .harness import REPO_ROOT, Cluster, wait_for
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    CREDENTIALS_SECRET,
    create_credentials_secret,
    operator_rbac,
)

pytestmark = [pytest.mark.timeout(300)]

EXAMPLE = REPO_ROOT / "examples" / "flowrun.yaml"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _page(url: str) -> str | None:
    """The body of a 200 answer, else None (not up yet, or an error page)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode()) if response.status == 200 else None
    except OSError:
        return None


def _can_i(cluster: Cluster, verb: str, resource: str, namespace: str, account: str) -> bool:
    # `can-i get pods/log` would ask about a pod named "log": a subresource is its own flag.
    resource, _, subresource = resource.partition("/")
    args = ["auth", "can-i", verb, resource, "-n", namespace,
            f"--as=system:serviceaccount:{account}"]
    args += [f"--subresource={subresource}"] if subresource else []
    return cluster.kubectl(*args, check=False).stdout.strip() == "yes"


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _get(cluster: Cluster, *args: str) -> dict[str, Any]:
    return dict(yaml.safe_load(cluster.kubectl("get", *args, "-o", "yaml").stdout))


@pytest.mark.usefixtures("operator_rbac")
def test_helm_install_runs_the_example_flow_and_uninstall_keeps_the_runs(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    s3 = cluster.s3
    release = f"fp-{uuid.uuid4().hex[:6]}"
    repository, tag = cluster.image.rsplit(":", 1)
    create_credentials_secret(cluster, namespace)
    values = {
        # The CRDs exist already (the suite applied crds/): the release adopts them.
        "crds.install": True,
        "operator.watchNamespaces": [namespace],
        "runNamespaces": [namespace],
        # The image built from this checkout and loaded into the node (no registry here).
        "image.repository": repository,
        "image.tag": tag,
        "s3.endpoint": s3.endpoint,
        "s3.region": s3.region,
        "s3.bucket": s3.bucket,
        "s3.prefix": f"chart-{release}",
        "s3.existingSecret": CREDENTIALS_SECRET,
        "ttlSecondsAfterFinished": 3600,
        # The dashboard, read-only, in the watched namespace (ui.namespaces follows it).
        "ui.enabled": True,
    }
    helm(cluster, "install", release, str(CHART), "--namespace", namespace, "--take-ownership",
         *set_json_args(values))
    installed = True
    try:
        deployment = f"{release}-flowpod-operator"
        cluster.kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace,
                        "--timeout=120s", timeout=150)
        pod = _get(cluster, "pods", "-n", namespace, "-l",
                   "app.kubernetes.io/component=operator")["items"][0]
        # The kubelet's probes pass (the rollout waited for Ready), and the health endpoint
        # answers on the pod's own address once kopf's watches run.
        assert _ready(pod), pod["status"]
        assert _healthy(f"http://{pod['status']['podIP']}:8080/healthz")
        assert pod["spec"]["serviceAccountName"] == f"{release}-flowpod-operator"
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        container = pod["spec"]["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False

        # The dashboard: rolled out, Ready (its probes hit /healthz), hardened like the operator,
        # with its own account, which reads pods' logs but no Secret and may not cancel a run.
        dashboard = f"{release}-flowpod-ui"
        cluster.kubectl("rollout", "status", f"deployment/{dashboard}", "-n", namespace,
                        "--timeout=120s", timeout=150)
        (ui_pod,) = _get(cluster, "pods", "-n", namespace, "-l",
                         f"app.kubernetes.io/instance={release},"
                         "app.kubernetes.io/component=ui")["items"]
        assert _ready(ui_pod), ui_pod["status"]
        assert ui_pod["spec"]["serviceAccountName"] == dashboard
        assert ui_pod["spec"]["securityContext"]["runAsNonRoot"] is True
        (ui_container,) = ui_pod["spec"]["containers"]
        assert ui_container["securityContext"]["readOnlyRootFilesystem"] is True
        assert ui_container["securityContext"]["allowPrivilegeEscalation"] is False
        (ui_port,) = [p["containerPort"] for p in ui_container["ports"] if p["name"] == "http"]
        ui_url = f"http://{ui_pod['status']['podIP']}:{ui_port}"
        assert _healthy(f"{ui_url}/healthz")
        account = f"{namespace}:{dashboard}"
        assert _can_i(cluster, "watch", "flowruns.flowpod.dev", namespace, account)
        assert _can_i(cluster, "get", "pods/log", namespace, account)
        assert not _can_i(cluster, "get", "secrets", namespace, account)
        assert not _can_i(cluster, "patch", "flowruns.flowpod.dev", namespace, account)

        cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLE))
        name = yaml.safe_load(EXAMPLE.read_text())["metadata"]["name"]

        def finished() -> dict[str, Any] | None:
            status = _get(cluster, "flowrun", name, "-n", namespace).get("status") or {}
            return status if status.get("state") in ("Completed", "Failed", "Crashed") else None

        status = wait_for(finished, 200, f"FlowRun {name} to finish", interval=0.5)
        assert status["state"] == "Completed", status
        repos = yaml.safe_load(EXAMPLE.read_text())["spec"]["parameters"]["repos"]
        assert status["tasksSummary"] == f"{len(repos)}/{len(repos)}", status
        # The flow pod ran as the chart's flow-runner account; the task pods as its task-runner
        # account, with no token.
        pods = _get(cluster, "pods", "-n", namespace, "-l", f"flowpod.dev/flowrun={name}")
        accounts = {p["metadata"]["name"]: p["spec"].get("serviceAccountName") for p in
                    pods["items"]}
        assert "flowpod-flow-runner" in accounts.values(), accounts
        task_pods = [p for p in pods["items"] if "flowpod.dev/taskrun" in p["metadata"]["labels"]]
        assert len(task_pods) == len(repos), accounts
        for task_pod in task_pods:
            assert task_pod["spec"]["serviceAccountName"] == "flowpod-task-runner"
            assert task_pod["spec"]["automountServiceAccountToken"] is False

        # The dashboard's runs page lists the finished run (its shared watch saw it).
        wait_for(lambda: name in (_page(f"{ui_url}/") or ""), 60,
                 f"the dashboard's runs page to list {name}", interval=0.5)

        # An upgrade replaces the operator (Recreate) with the new settings and the CRDs stay.
        old_pod = pod["metadata"]["name"]
        helm(cluster, "upgrade", release, str(CHART), "--namespace", namespace, "--reuse-values",
             "--set", "operator.successEvents=true")
        cluster.kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace,
                        "--timeout=120s", timeout=150)

        def replaced() -> dict[str, Any] | None:
            items = _get(cluster, "pods", "-n", namespace, "-l",
                         "app.kubernetes.io/component=operator")["items"]
            live = [p for p in items if p["metadata"]["name"] != old_pod
                    and p["status"].get("phase") == "Running"]
            return live[0] if live and len(items) == 1 else None

        new_pod = wait_for(replaced, 90, "the upgraded operator pod alone", interval=0.3)
        env = {e["name"]: e.get("value") for e in new_pod["spec"]["containers"][0]["env"]}
        assert env["FLOWPOD_OPERATOR_SUCCESS_EVENTS"] == "1"
        new_name = new_pod["metadata"]["name"]
        wait_for(lambda: _ready(_get(cluster, "pod", new_name, "-n", namespace)), 90,
                 "the upgraded operator to be Ready", interval=0.3)

        helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")
        installed = False
        assert cluster.kubectl("get", "deployment", deployment, "-n", namespace,
                               check=False).returncode != 0
        assert cluster.kubectl("get", "clusterrole", deployment, check=False).returncode != 0
        for kind in ("deployment", "service", "serviceaccount", "rolebinding"):
            assert cluster.kubectl("get", kind, dashboard, "-n", namespace,
                                   check=False).returncode != 0, kind
        assert cluster.kubectl("get", "clusterrole", dashboard, check=False).returncode != 0
        for crd in ("flowruns.flowpod.dev", "taskruns.flowpod.dev"):
            kept = _get(cluster, "crd", crd)
            assert kept["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert _get(cluster, "flowrun", name, "-n", namespace)["status"]["state"] == "Completed"
    finally:
        if installed:
            helm(cluster, "uninstall", release, "--namespace", namespace, check=False)
