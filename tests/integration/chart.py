"""Rendering charts/flowpod with the test cluster's helm, for the fixtures and the chart tests.

The integration suite takes its RBAC from the chart (not from hand-kept copies), so the rules a
user installs are the rules the operator and the flow pods are tested under.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .harness import REPO_ROOT, Cluster

CHART = REPO_ROOT / "charts" / "flowpod"
CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))
RELEASE = "flowpod"
RELEASE_NAMESPACE = "flowpod-system"


def helm(cluster: Cluster, *args: str, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the cluster's helm against the test cluster; raise with its output when it fails."""
    cmd = [cluster.info["binaries"]["helm"], "--kubeconfig", cluster.kubeconfig, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def set_json_args(values: Mapping[str, Any]) -> list[str]:
    """``--set-json key=<json>`` for each top-level or dotted key."""
    args: list[str] = []
    for key, value in values.items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def render(cluster: Cluster, *, release: str = RELEASE, namespace: str = RELEASE_NAMESPACE,
           values_file: Path | None = None, values: Mapping[str, Any] | None = None,
           show_only: Sequence[str] = (), check: bool = True) -> subprocess.CompletedProcess[str]:
    """``helm template`` of the chart (stdout holds the manifests when it succeeds)."""
    # helm built with `go install` assumes Kubernetes v1.20 offline; render for the test cluster.
    args = ["template", release, str(CHART), "--namespace", namespace,
            "--kube-version", cluster.info["versions"]["kubernetes"]]
    if values_file is not None:
        args += ["--values", str(values_file)]
    args += set_json_args(values or {})
    for template in show_only:
        args += ["--show-only", f"templates/{template}"]
    return helm(cluster, *args, check=check)


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def ensure_namespace(cluster: Cluster, name: str) -> None:
    manifest = cluster.kubectl("create", "namespace", name, "--dry-run=client",
                               "-o", "yaml").stdout
    cluster.kubectl("apply", "-f", "-", input=manifest)


def _apply(cluster: Cluster, text: str, namespace: str) -> str:
    """Server-side apply of rendered manifests holding one ServiceAccount, which must be in
    ``namespace``; returns its name."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=tests",
                    "-f", "-", input=text)
    accounts = [doc for doc in documents(text) if doc["kind"] == "ServiceAccount"]
    assert [doc["metadata"]["namespace"] for doc in accounts] == [namespace], accounts
    return str(accounts[0]["metadata"]["name"])


def apply_operator_rbac(cluster: Cluster) -> str:
    """The chart's operator ServiceAccount and cluster-wide RBAC, as `helm install flowpod -n
    flowpod-system` creates them; returns the ServiceAccount's name."""
    ensure_namespace(cluster, RELEASE_NAMESPACE)
    text = render(cluster, show_only=["operator-rbac.yaml"]).stdout
    return _apply(cluster, text, RELEASE_NAMESPACE)


def apply_flow_runner_rbac(cluster: Cluster, namespace: str) -> str:
    """The chart's flow-runner ClusterRole, ServiceAccount and RoleBinding for one run namespace;
    returns the ServiceAccount's name."""
    text = render(cluster, values={"runNamespaces": [namespace]},
                  show_only=["flow-runner-rbac.yaml"]).stdout
    return _apply(cluster, text, namespace)
