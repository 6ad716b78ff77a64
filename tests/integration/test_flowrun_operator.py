# ruff: noqa: F811 - pytest fixtures imported from operator_fixtures are parameters here
"""The operator's FlowRun side on the real test cluster: FlowRun in, flow pod, TaskRuns, state out.

Each test gets a fresh namespace, its own operator (as its ServiceAccount) and the flow-runner
RBAC of the Helm chart. FlowRuns are created by the admin, as `kubectl apply`
would; entrypoint flows live in a module of a user's image, built FROM the flowpod image with a
Dockerfile of its own and loaded into the node (`scripts/cluster image --file ... --load`, what
`docker build` and `kind load` do) and named by spec.image; spec.code flows are pickled by value
into the store, as the SDK does. Waits poll conditions with timeouts; nothing sleeps for a fixed
time.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from flowpod import flow, task
from flowpod._contract.keys import flow_code_key, log_key
from flowpod._storage.run_files import read_result

from .harness import REPO_ROOT, Cluster
from .operator_fixtures import (  # noqa: F401 - fixtures
    OperatorProcess,
    flow_runner_rbac,
    operator,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
    wait_until,
)

GROUP, VERSION = "flowpod.dev", "v1alpha1"
FINAL = {"Completed", "Failed", "TimedOut", "Crashed", "Cancelled"}

FLOW_MODULE = '''
import time

from flowpod import flow, task


@task
def square(x: int) -> int:
    return x * x


@task
def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


@flow(name="sum-of-squares")
def sum_of_squares(n: int, offset: int = 0) -> int:
    futures = [square.submit(i) for i in range(n)]
    direct = square(offset)  # a direct call: runs inside the flow pod
    return sum(f.result() for f in futures) + direct


@flow
def always_fails() -> None:
    raise RuntimeError("the flow gives up")


@flow
def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@flow
def naps_in_tasks(seconds: float) -> list[str]:
    return [f.result() for f in [nap.submit(seconds), nap.submit(seconds)]]


not_a_flow = 42
'''


@task
def cube(x: int) -> int:
    return x * x * x


@flow(name="sum-of-cubes")
def sum_of_cubes(n: int) -> int:
    return sum(f.result() for f in [cube.submit(i) for i in range(n)])


# -- helpers ------------------------------------------------------------------------------------


FLOWS_DOCKERFILE = """\
# A user's image: their flows on top of flowpod's.
ARG BASE
FROM ${BASE}
COPY fp_test_flows.py /opt/flows/
ENV PYTHONPATH=/opt/flows
"""


@dataclass(frozen=True)
class FlowsImage:
    image: str
    module: str = "fp_test_flows"


@pytest.fixture(scope="module")
def flows_dir(cluster: Cluster, node_image: str,
              tmp_path_factory: pytest.TempPathFactory) -> FlowsImage:
    """The entrypoint module, in an image built FROM flowpod's and loaded into the node."""
    context = tmp_path_factory.mktemp("flows-image")
    (context / "Dockerfile").write_text(FLOWS_DOCKERFILE)
    (context / "fp_test_flows.py").write_text(textwrap.dedent(FLOW_MODULE))
    tag = "flowpod-test-flows:dev"
    env = {**os.environ, **cluster.env, "FLOWPOD_CLUSTER_STATE": str(cluster.state_dir)}
    proc = subprocess.run(
        [str(REPO_ROOT / "scripts" / "cluster"), "image", "--file", str(context / "Dockerfile"),
         "--context", str(context), "--build-arg", f"BASE={node_image}", "--tag", tag, "--load"],
        capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return FlowsImage(tag)


def _store() -> Any:
    from flowpod._storage.config import store_from_env

    store = store_from_env()
    assert store is not None, "the cluster's S3 settings are not in the environment"
    return store


def _custom(kube_api: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(kube_api)


def create_flowrun(kube_api: Any, namespace: str, flows: FlowsImage | None, **spec: Any) -> str:
    name = f"fr-{uuid.uuid4().hex[:8]}"
    if flows is not None:
        spec["image"] = flows.image
        if "entrypoint" in spec and spec["entrypoint"].startswith(":"):
            spec["entrypoint"] = flows.module + spec["entrypoint"]
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowRun",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}
    _custom(kube_api).create_namespaced_custom_object(GROUP, VERSION, namespace, "flowruns", body)
    return name


def get_flowrun(kube_api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = _custom(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "flowruns", name)
        return obj
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def wait_state(kube_api: Any, namespace: str, name: str, states: set[str],
               timeout: float = 120) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        obj = get_flowrun(kube_api, namespace, name)
        last["status"] = (obj or {}).get("status")
        return obj if obj and (obj.get("status") or {}).get("state") in states else None

    try:
        result: dict[str, Any] = wait_until(reached, timeout, f"FlowRun {name} in {states}")
    except AssertionError as exc:
        # Say where it stood: a flake under load and a stuck run read differently.
        raise AssertionError(f"{exc}; last status: {last.get('status')}") from None
    return result


def taskruns_of(kube_api: Any, namespace: str, flowrun: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = _custom(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, "taskruns", label_selector=f"flowpod.dev/flowrun={flowrun}"
    )["items"]
    return items


def pods_of(kube_api: Any, namespace: str, flowrun: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(kube_api).list_namespaced_pod(
        namespace, label_selector=f"flowpod.dev/flowrun={flowrun}").items)


def history(obj: dict[str, Any]) -> list[str]:
    return [entry["state"] for entry in obj["status"].get("history") or []]


# -- tests --------------------------------------------------------------------------------------


def test_entrypoint_flow_completes_with_counts_result_and_logs(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage
) -> None:
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, entrypoint=":sum_of_squares",
                          parameters={"n": "4", "offset": 3})
    obj = wait_state(kube_api, namespace, name, FINAL)
    status = obj["status"]
    assert status["state"] == "Completed", (status, operator.logs())
    assert read_result(_store(), status["resultRef"]) == 0 + 1 + 4 + 9 + 9
    # Counts arrive in batches: wait for the last one.
    done = wait_until(lambda: (get_flowrun(kube_api, namespace, name) or {}).get(
        "status", {}).get("tasksSummary") == "4/4", 30, "tasksSummary 4/4")
    assert done
    counts = get_flowrun(kube_api, namespace, name)["status"]["taskRuns"]  # type: ignore[index]
    assert counts["total"] == 4 and counts["completed"] == 4
    taskruns = taskruns_of(kube_api, namespace, name)
    assert len(taskruns) == 4  # the direct call made no TaskRun
    assert all(tr["metadata"]["ownerReferences"][0]["name"] == name for tr in taskruns)
    assert history(obj)[0] == "Pending" and history(obj)[-1] == "Completed"
    assert status["attempt"] == 1 and status["pod"] == f"{name}-flow-1"
    assert status["startTime"] and status["endTime"] and status["duration"]
    store = _store()
    flow_log = store.get(log_key(namespace, name, 1)).decode()
    assert "sum-of-squares" in flow_log or "Finished in state Completed" in flow_log
    task_log = store.get(log_key(namespace, taskruns[0]["metadata"]["name"], 1)).decode()
    assert "Finished in state Completed" in task_log


def test_code_flow_completes(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess
) -> None:
    from flowpod._kube.submit import dump_flow  # what `flowpod submit` stores

    namespace = flow_runner_rbac
    name = f"fr-{uuid.uuid4().hex[:8]}"
    key = flow_code_key(namespace, name)
    _store().put(key, dump_flow(sum_of_cubes))
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FlowRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"code": key, "flowName": "sum-of-cubes", "parameters": {"n": 3}}}
    _custom(kube_api).create_namespaced_custom_object(GROUP, VERSION, namespace, "flowruns", body)
    status = wait_state(kube_api, namespace, name, FINAL)["status"]
    assert status["state"] == "Completed", (status, operator.logs())
    assert read_result(_store(), status["resultRef"]) == 0 + 1 + 8
    assert len(taskruns_of(kube_api, namespace, name)) == 3


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"entrypoint": "no_such_module_xyz:flow"}, "unknown entrypoint"),
        ({"entrypoint": ":not_a_flow"}, "not a flow"),
        ({"entrypoint": ":sum_of_squares", "parameters": {"n": "many"}}, "'n'"),
        ({"entrypoint": ":sum_of_squares", "parameters": {}}, "n"),
    ],
    ids=["unknown-module", "not-a-flow", "bad-parameter", "missing-parameter"],
)
def test_unrunnable_flow_fails_with_message(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage,
    spec: dict[str, Any], expected: str,
) -> None:
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, **spec)
    status = wait_state(kube_api, namespace, name, FINAL)["status"]
    assert status["state"] == "Failed", status
    assert expected in status["message"], status["message"]
    assert taskruns_of(kube_api, namespace, name) == []


def test_a_missing_service_account_ends_the_flow_run_at_once_with_the_reason(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage
) -> None:
    # The FlowRun case: the flow pod's ServiceAccount does not exist, so the API server
    # refuses the pod (403). The FlowRun says so in its status and an event within seconds.
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, entrypoint=":sum_of_squares",
                          parameters={"n": 2}, serviceAccountName="no-such-runner",
                          pendingTimeoutSeconds=600, retries=2)
    status = wait_state(kube_api, namespace, name, FINAL, timeout=60)["status"]
    assert status["state"] == "Crashed", status
    assert status["reason"] == "ServiceAccountNotFound", status
    assert 'serviceaccount "no-such-runner" not found' in status["message"], status
    assert status["attempt"] == 1
    assert taskruns_of(kube_api, namespace, name) == []

    def event() -> Any:
        from kubernetes import client

        items = client.CoreV1Api(kube_api).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}").items
        return [e for e in items if e.reason == "ServiceAccountNotFound"] or None

    wait_until(event, 30, "a ServiceAccountNotFound event on the FlowRun")


def test_flow_retries_start_a_new_flow_pod(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage
) -> None:
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, entrypoint=":always_fails",
                          retries=1, retryDelaySeconds=[0.5])
    obj = wait_state(kube_api, namespace, name, FINAL)
    assert obj["status"]["state"] == "Failed"
    assert "the flow gives up" in obj["status"]["message"]
    assert obj["status"]["attempt"] == 2
    # Running may be skipped when a pod ends before the operator sees it running.
    assert [s for s in history(obj) if s != "Running"] == [
        "Pending", "Failed", "AwaitingRetry", "Retrying", "Failed"], history(obj)
    names = sorted(p.metadata.name for p in pods_of(kube_api, namespace, name))
    assert names == [f"{name}-flow-1", f"{name}-flow-2"]


def test_timeout_ends_timed_out(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage
) -> None:
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, entrypoint=":sleeps",
                          parameters={"seconds": 60}, timeoutSeconds=2)
    status = wait_state(kube_api, namespace, name, FINAL, timeout=60)["status"]
    assert status["state"] == "TimedOut", status
    # The flow pod stops the flow at its timeout itself, with the local engine's message; the
    # kubelet's deadline is only the backstop.
    assert status["message"] == "Flow run exceeded timeout of 2.0 second(s)", status


def test_cancel_stops_every_pod(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage
) -> None:
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, entrypoint=":naps_in_tasks",
                          parameters={"seconds": 120})

    def tasks_running() -> bool:
        runs = taskruns_of(kube_api, namespace, name)
        return len(runs) == 2 and all(
            (tr.get("status") or {}).get("state") == "Running" for tr in runs)

    wait_until(tasks_running, 90, "both task runs Running")
    _custom(kube_api).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "flowruns", name, {"spec": {"cancel": True}})
    status = wait_state(kube_api, namespace, name, {"Cancelled"}, timeout=30)["status"]
    assert status["message"]
    wait_until(lambda: all((tr.get("status") or {}).get("state") == "Cancelled"
                           for tr in taskruns_of(kube_api, namespace, name)),
               30, "task runs Cancelled")
    wait_until(lambda: all(p.status.phase in ("Succeeded", "Failed") or
                           p.metadata.deletion_timestamp
                           for p in pods_of(kube_api, namespace, name)) and not [
        p for p in pods_of(kube_api, namespace, name)
        if p.metadata.labels.get("flowpod.dev/role") == "flow"], 60, "every pod stopped")


def test_ttl_deletes_the_flowrun_and_what_it_owns(
    kube_api: Any, flow_runner_rbac: str, operator: OperatorProcess, flows_dir: FlowsImage
) -> None:
    namespace = flow_runner_rbac
    name = create_flowrun(kube_api, namespace, flows_dir, entrypoint=":sum_of_squares",
                          parameters={"n": 2}, ttlSecondsAfterFinished=2)
    wait_state(kube_api, namespace, name, {"Completed"})
    wait_until(lambda: get_flowrun(kube_api, namespace, name) is None, 60, "FlowRun deleted")
    wait_until(lambda: not taskruns_of(kube_api, namespace, name), 60, "TaskRuns deleted")
    wait_until(lambda: not pods_of(kube_api, namespace, name), 60, "pods deleted")

