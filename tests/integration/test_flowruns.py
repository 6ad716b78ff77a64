"""Whole flows on the test cluster: submitted with the CLI, the SDK and ``kubectl apply``.

The repository-statistics example (``examples/flowpod_examples/repo_stats.py``) runs as a FlowRun:
the operator (as its ServiceAccount) starts a flow pod, the flow pod submits one TaskRun per
repository, and the result comes back through the store. The offline GitHub stub runs in this
test process on the node's address, which pods reach through the cluster bridge, and they are
pointed at it by FLOWPOD_EXAMPLE_API in the FlowRun's env. Flow pods run as the chart's flow-runner
ServiceAccount and RBAC in the test namespace (the ``flow_runner`` fixture).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import apply_flow_runner_rbac
from .harness import REPO_ROOT, Cluster, wait_for
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    operator,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator", "flow_runner")]

EXAMPLES = REPO_ROOT / "examples"
FLOW_FILE = EXAMPLES / "flowpod_examples" / "repo_stats.py"
FLOWPOD = Path(sys.executable).with_name("flowpod")
REPOS = ["PrefectHQ/prefect", "pallets/click"]


@pytest.fixture(scope="module")
def module_stub(cluster: Cluster) -> Iterator[Any]:
    """One offline GitHub stand-in for the module, on the node's address (pods reach it)."""
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))
    from flowpod_examples.stub_api import StubAPI

    stub = StubAPI(page_latency=0, host=cluster.node_ip).start()
    yield stub
    stub.stop()


@pytest.fixture
def stub(module_stub: Any) -> Any:
    """The module's stub with an empty request log, so a test sees only its own pods' calls."""
    module_stub.clear()
    return module_stub


@pytest.fixture
def stub_url(stub: Any) -> str:
    return str(stub.url)


def assert_pods_fetched(stub: Any, repos: list[str]) -> None:
    """The stub answered each repository's statistics (the test process itself never asks)."""
    for name in repos:
        answered = [r for r in stub.requests_to(f"/repos/{name}") if r.status == 200]
        assert answered, f"no pod fetched /repos/{name}; the stub saw {stub.requests}"


@pytest.fixture
def flow_runner(cluster: Cluster, namespace: str) -> None:
    """The chart's flow-runner ServiceAccount and RoleBinding in the namespace."""
    apply_flow_runner_rbac(cluster, namespace)


def expected_stats(repos: list[str]) -> dict[str, dict[str, int]]:
    if str(EXAMPLES) not in sys.path:
        sys.path.append(str(EXAMPLES))
    from flowpod_examples.stub_api import repo_data

    return {name: {"stars": repo_data(name).stars, "forks": repo_data(name).forks}
            for name in repos}


def pod_env(stub_url: str) -> dict[str, str]:
    # No PYTHONPATH: the example flows and their stub ship with flowpod (flowpod_examples).
    return {"FLOWPOD_EXAMPLE_API": stub_url}


def flowpod_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FLOWPOD), *args], capture_output=True, text=True,
                          timeout=timeout)


def taskruns_of(cluster: Cluster, namespace: str, flowrun: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "taskruns", "-n", namespace, "-l",
                          f"flowpod.dev/flowrun={flowrun}", "-o", "yaml").stdout
    return list(yaml.safe_load(out)["items"])


def flowrun_obj(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "flowrun", name, "-n", namespace, "-o", "yaml").stdout
    return dict(yaml.safe_load(out))


def handle_for(namespace: str, name: str) -> Any:
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod.kubernetes import FlowRunHandle

    return FlowRunHandle(name, namespace, api=FlowRunApi())


def test_cli_submit_wait_completes_with_one_taskrun_per_repo(
    cluster: Cluster, namespace: str, stub: Any, stub_url: str
) -> None:
    env_args = [arg for key, value in pod_env(stub_url).items()
                for arg in ("--env", f"{key}={value}")]
    proc = flowpod_cli("submit", f"{FLOW_FILE}:repo_stats", "-p", f"repos={REPOS!r}".replace(
        "'", '"'), "-n", namespace, *env_args, "--wait", "--timeout", "200")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "finished in state Completed" in proc.stdout
    assert f"Completed: {len(REPOS)}/{len(REPOS)} task runs done" in proc.stdout
    name = proc.stdout.split("flowrun.flowpod.dev/")[1].split()[0]
    assert len(taskruns_of(cluster, namespace, name)) == len(REPOS)
    assert handle_for(namespace, name).result(timeout=10) == expected_stats(REPOS)
    assert_pods_fetched(stub, REPOS)

    table = flowpod_cli("get", "flowruns", "-n", namespace)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(name))
    assert row.split()[1:4] == ["repo-stats", "Completed", f"{len(REPOS)}/{len(REPOS)}"]

    # Logs survive their pods: delete every pod, then read the logs from the store.
    cluster.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=true")
    logs = flowpod_cli("logs", name, "-n", namespace)
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert any(line.startswith("flow repo-stats | ") and "pallets/click" in line
               for line in lines)
    for index in range(len(REPOS)):
        assert any(line.startswith(f"get_url-{index} | ") for line in lines), logs.stdout


def test_sdk_submit_returns_the_flows_result(namespace: str, stub: Any, stub_url: str,
                                             cluster: Cluster) -> None:
    from flowpod_examples.repo_stats import repo_stats  # type: ignore[import-not-found, unused-ignore]

    from flowpod.kubernetes import submit

    handle = submit(repo_stats, {"repos": REPOS[:1]}, namespace=namespace,
                    env=pod_env(stub_url), wait=True, timeout=200)
    assert handle.state == "Completed"
    assert handle.result() == expected_stats(REPOS[:1])
    assert len(taskruns_of(cluster, namespace, handle.name)) == 1
    assert_pods_fetched(stub, REPOS[:1])


def test_kubectl_apply_of_the_example_completes(cluster: Cluster, namespace: str, stub: Any,
                                                stub_url: str) -> None:
    # The shipped file plus one env entry pointing the pods at this test's stub (the file itself
    # leaves it out, so a user's pods each answer with their own offline stub).
    manifest = yaml.safe_load((EXAMPLES / "flowrun.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"].setdefault("env", []).append(
        {"name": "FLOWPOD_EXAMPLE_API", "value": stub_url})
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    name = manifest["metadata"]["name"]
    handle = handle_for(namespace, name)
    assert handle.wait(timeout=200) == "Completed", handle.message
    repos = manifest["spec"]["parameters"]["repos"]
    assert handle.result() == expected_stats(repos)
    assert len(taskruns_of(cluster, namespace, name)) == len(repos)
    assert_pods_fetched(stub, repos)


def test_bad_parameters_end_failed_with_a_message_naming_them(
    cluster: Cluster, namespace: str
) -> None:
    manifest = yaml.safe_load((EXAMPLES / "flowrun.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["parameters"] = {"repos": 42}
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    handle = handle_for(namespace, manifest["metadata"]["name"])
    assert handle.wait(timeout=200) == "Failed"
    assert "repos" in (handle.message or "")
    proc = flowpod_cli("get", "flowruns", handle.name, "-n", namespace)
    assert "Failed" in proc.stdout


SLOW_FLOW = '''
import time
from flowpod import flow, task

@task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds

@flow
def sleepy(n: int = 2) -> list[float]:
    return nap.map([600.0] * n).result()
'''


def test_cancel_stops_every_pod(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    path = tmp_path / "sleepy_flows.py"
    path.write_text(SLOW_FLOW)
    proc = flowpod_cli("submit", f"{path}:sleepy", "-n", namespace)
    assert proc.returncode == 0, proc.stderr
    name = proc.stdout.split("flowrun.flowpod.dev/")[1].split()[0]

    def running_pods() -> list[str]:
        out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout
        return [line for line in out.splitlines() if line.strip()]

    wait_for(lambda: len(running_pods()) >= 3, 120, "the flow pod and two task pods")
    # While the pods run, their logs come from the pods themselves (nothing is stored yet).
    wait_for(lambda: "Submitted task run 'nap-1'" in flowpod_cli("logs", name, "-n",
                                                                  namespace).stdout,
             60, "the running flow pod's live log")
    cancelled = flowpod_cli("cancel", name, "-n", namespace, "--wait", "--timeout", "120")
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert "finished in state Cancelled" in cancelled.stdout
    wait_for(lambda: running_pods() == [], 120, "every pod of the cancelled run to go")
    states = {tr["status"].get("state") for tr in taskruns_of(cluster, namespace, name)}
    assert states == {"Cancelled"}
    assert flowrun_obj(cluster, namespace, name)["status"]["state"] == "Cancelled"


FAILING_FLOW = '''
from flowpod import flow, task

@task
def check(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x

@flow
def checker(values: list[int]) -> list[int]:
    return check.map(values).result()
'''


def test_a_failing_task_fails_the_flow_and_submit_wait_exits_1(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    path = tmp_path / "checker_flows.py"
    path.write_text(FAILING_FLOW)
    proc = flowpod_cli("submit", f"{path}:checker", "-p", "values=[1, -2]", "-n", namespace,
                       "--wait", "--timeout", "200")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "finished in state Failed" in proc.stdout
    name = proc.stdout.split("flowrun.flowpod.dev/")[1].split()[0]
    states = sorted(tr["status"]["state"] for tr in taskruns_of(cluster, namespace, name))
    assert states == ["Completed", "Failed"]
    from flowpod.exceptions import FailedRun

    with pytest.raises(FailedRun):
        handle_for(namespace, name).result(timeout=10)


BRITTLE_FLOW = '''
import json
import os
from urllib.request import urlopen

from flowpod import flow

@flow(retries=1, retry_delay_seconds=1)
def brittle(session: str) -> int:
    url = os.environ["FLOWPOD_EXAMPLE_API"] + f"/brittle/endpoint?fail=1&session={session}"
    with urlopen(url, timeout=30) as response:
        return int(response.status)
'''


def test_flow_retries_start_a_new_flow_pod(cluster: Cluster, namespace: str, tmp_path: Path,
                                           stub_url: str) -> None:
    import uuid

    path = tmp_path / "brittle_flows.py"
    path.write_text(BRITTLE_FLOW)
    proc = flowpod_cli("submit", f"{path}:brittle", "-p", f"session={uuid.uuid4().hex}",
                       "-n", namespace, "--env", f"FLOWPOD_EXAMPLE_API={stub_url}",
                       "--wait", "--timeout", "200")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    name = proc.stdout.split("flowrun.flowpod.dev/")[1].split()[0]
    assert handle_for(namespace, name).result(timeout=10) == 200
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l",
                          f"flowpod.dev/flowrun={name},flowpod.dev/role=flow",
                          "-o", "name").stdout
    assert len(out.split()) == 2
    # Both attempts' logs are readable, the first one showing the failure.
    logs = flowpod_cli("logs", name, "-n", namespace)
    assert "#1 | " in logs.stdout and "#2 | " in logs.stdout, logs.stdout


def test_unknown_entrypoint_ends_failed_with_a_message(cluster: Cluster,
                                                       namespace: str) -> None:
    manifest = yaml.safe_load((EXAMPLES / "flowrun.yaml").read_text())
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"]["entrypoint"] = "flowpod_examples.nowhere:nothing"
    manifest["spec"]["retries"] = 0
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))
    handle = handle_for(namespace, manifest["metadata"]["name"])
    assert handle.wait(timeout=200) == "Failed"
    assert "flowpod_examples.nowhere" in (handle.message or "")


def test_ttl_deletes_the_flowrun_and_what_it_owns(cluster: Cluster, namespace: str,
                                                  stub_url: str) -> None:
    from flowpod_examples.repo_stats import repo_stats  # type: ignore[import-not-found, unused-ignore]

    from flowpod.kubernetes import submit

    handle = submit(repo_stats, {"repos": REPOS[:1]}, namespace=namespace,
                    env=pod_env(stub_url), ttl_seconds_after_finished=2)
    assert handle.wait(timeout=200) == "Completed"
    assert len(taskruns_of(cluster, namespace, handle.name)) == 1

    def gone() -> bool:
        found = cluster.kubectl("get", "flowrun", handle.name, "-n", namespace, check=False)
        return found.returncode != 0 and "NotFound" in found.stderr

    wait_for(gone, 60, "the FlowRun to be deleted after its TTL")
    wait_for(lambda: taskruns_of(cluster, namespace, handle.name) == [], 60,
             "its TaskRuns to be garbage-collected")
