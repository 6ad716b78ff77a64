"""What the cluster benchmarks share: the test cluster's settings, kubectl, waiting on a condition.

The benchmarks run as scripts (``python bench/<name>.py``), so this folder is on ``sys.path`` and
they import this module by its plain name.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def cluster_info() -> dict[str, Any]:
    """``scripts/cluster env --json``: kubeconfig, binaries, S3 settings of the running cluster."""
    proc = subprocess.run([str(ROOT / "scripts" / "cluster"), "env", "--json"],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"the test cluster is not running (scripts/cluster up): {proc.stderr}")
    info: dict[str, Any] = json.loads(proc.stdout)
    return info


def kubectl(info: dict[str, Any], *args: str, input: str | None = None) -> str:
    """Run the cluster's kubectl as the admin; exit the benchmark with its message on failure."""
    cmd = [info["binaries"]["kubectl"], "--kubeconfig", info["kubeconfig"], *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, input=input)
    if proc.returncode != 0:
        raise SystemExit(f"kubectl {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def apply_chart_rbac(info: dict[str, Any], run_namespace: str | None = None) -> None:
    """The Helm chart's operator ServiceAccount and RBAC (release ``flowpod`` in
    ``flowpod-system``) and, given a run namespace, its flow-runner account and binding there."""
    chart = str(ROOT / "charts" / "flowpod")
    ns = kubectl(info, "create", "namespace", "flowpod-system", "--dry-run=client", "-o", "yaml")
    kubectl(info, "apply", "-f", "-", input=ns)
    args = [info["binaries"]["helm"], "template", "flowpod", chart, "-n", "flowpod-system",
            "--kube-version", info["versions"]["kubernetes"],
            "--show-only", "templates/operator-rbac.yaml"]
    if run_namespace:
        args += ["--show-only", "templates/flow-runner-rbac.yaml",
                 "--set-json", f'runNamespaces=["{run_namespace}"]']
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise SystemExit(f"helm template failed: {proc.stderr}")
    kubectl(info, "apply", "--server-side", "--force-conflicts", "--field-manager=bench",
            "-f", "-", input=proc.stdout)


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile ``pct`` of ``values`` (NaN when there are none)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; exit the benchmark after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
