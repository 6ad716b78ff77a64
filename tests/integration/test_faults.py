# ruff: noqa: F811 - pytest fixtures imported from operator_fixtures are parameters here
"""Faults lose nothing (issue 12): a flow of many submitted tasks survives each injected fault.

Each test runs one flow of ``FLOWPOD_FAULT_TASKS`` (default 300) trivial tasks (``x * 2``) with
``KubernetesTaskRunner``: real TaskRuns, the operator as its ServiceAccount, one real pod of the
image per attempt on the node, results in MinIO. While it runs, one fault is injected; then the
flow must return the right sum, and the recorders (a list+watch of every pod and TaskRun in the
namespace, resumed across API server restarts) must show 0 lost tasks (every TaskRun Completed),
0 duplicate attempts (no two pods with the same ``flowpod.dev/taskrun`` + ``flowpod.dev/attempt``)
and 0 extra pods (exactly one pod per TaskRun: the tasks never fail, so no attempt 2 is due).

Faults: the operator SIGKILLed 10 times at random moments (restarted each time, as its
Deployment would), the API server restarted (``scripts/cluster restart-apiserver``), MinIO down
for 30 s (``scripts/cluster stop-minio`` / ``start-minio``), and the flow pod of a FlowRun deleted
while it runs (a new flow pod resumes the run, adopting the TaskRuns the lost one created, so no
TaskRun is created twice). Each test prints a ``FAULT REPORT`` line and writes it to
``$FLOWPOD_FAULT_RESULTS/<fault>.json`` (default /tmp/flowpod-faults): injected N times, outcome,
lost/duplicates/extra, time to recover (fault end -> the next TaskRun state change, and -> the next
TaskRun Completed), run time.
docs/reliability.md has the figures of this machine. Marker: ``faults``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowpod import flow, task
from flowpod.kubernetes import KubernetesTaskRunner

from .fault_tools import (
    RESULTS_DIR,
    Accounting,
    BackgroundFlow,
    FaultReport,
    Recorder,
    account,
    cluster_command,
    completed_names,
    pod_recorder,
    taskrun_recorder,
    wait_recovery,
)
from .harness import Cluster, wait_for
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    OperatorProcess,
    flow_runner_rbac,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
)

N_TASKS = int(os.environ.get("FLOWPOD_FAULT_TASKS", "300"))
SEED = int(os.environ.get("FLOWPOD_FAULT_SEED", str(int(time.time()))))
EXPECTED = sum(x * 2 for x in range(N_TASKS))
# A faultless 300-task run takes a few minutes here; a fault adds its own length and recovery.
RUN_TIMEOUT = float(os.environ.get("FLOWPOD_FAULT_RUN_TIMEOUT", "900"))

pytestmark = [pytest.mark.faults, pytest.mark.timeout(RUN_TIMEOUT + 300)]


@task
def double(x: int) -> int:
    return x * 2


def start_run(namespace: str) -> BackgroundFlow:
    runner = KubernetesTaskRunner(namespace=namespace)

    @flow(task_runner=runner)
    def many_doubles() -> int:
        return sum(double.map(list(range(N_TASKS))).result(timeout=RUN_TIMEOUT))

    return BackgroundFlow(many_doubles).start()


class Watched:
    """The recorders of one test's namespace."""

    def __init__(self, kube_api: Any, namespace: str) -> None:
        self.pods: Recorder = pod_recorder(kube_api, namespace)
        self.taskruns: Recorder = taskrun_recorder(kube_api, namespace)

    def completed(self) -> int:
        return len(completed_names(self.taskruns))

    def created(self) -> int:
        return len(self.taskruns.snapshot())

    def stop(self) -> None:
        self.pods.stop()
        self.taskruns.stop()


@pytest.fixture
def watched(kube_api: Any, namespace: str) -> Iterator[Watched]:
    w = Watched(kube_api, namespace)
    yield w
    w.stop()


@pytest.fixture
def operator(operator_factory: Callable[..., OperatorProcess]) -> OperatorProcess:  # noqa: F811
    return operator_factory()


def wait_completed(watched: Watched, count: float, run: BackgroundFlow, what: str) -> None:
    def reached() -> bool:
        if run.done and run.error is not None:
            raise AssertionError(f"the flow failed while waiting for {what}: {run.error!r}")
        return watched.completed() >= count or run.done

    wait_for(reached, RUN_TIMEOUT, what, interval=0.05)


FINAL = {"Completed", "Cached", "Failed", "TimedOut", "Crashed", "Cancelled"}


def keep_evidence(report: FaultReport, watched: Watched, cluster: Cluster,
                  namespace: str) -> None:
    """After a failed run: let every TaskRun end (up to 2 min), count, and keep the logs of the
    pods of the TaskRuns that did not complete next to the report, for the product owner."""
    def all_final() -> bool:
        runs = watched.taskruns.snapshot()
        return len(runs) >= N_TASKS and all(
            (tr.get("status") or {}).get("state") in FINAL for tr in runs)

    try:
        wait_for(all_final, 120, "every TaskRun in a final state", interval=0.2)
    except AssertionError as exc:
        report.notes.append(str(exc))
    report.accounting = account(watched.pods, watched.taskruns, N_TASKS)
    states: dict[str, int] = {}
    for tr in watched.taskruns.snapshot():
        state = str((tr.get("status") or {}).get("state"))
        states[state] = states.get(state, 0) + 1
    report.notes.append(f"TaskRun states at the end: {states}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    for name, status in list(report.accounting.not_completed.items())[:10]:
        pod = status.get("pod")
        if pod:
            logs = cluster.kubectl("logs", "-n", namespace, str(pod), check=False)
            path = RESULTS_DIR / f"{report.fault}-{pod}.log"
            path.write_text(logs.stdout + logs.stderr)
            report.notes.append(f"{name}: {status.get('state')} ({status.get('reason')}), "
                                f"pod log {path}")
    report.write()


def finish(report: FaultReport, run: BackgroundFlow, watched: Watched,
           cluster: Cluster, namespace: str) -> Accounting:
    """Wait for the run, check its result, and count what the cluster shows."""
    try:
        result = run.wait(RUN_TIMEOUT)
    except BaseException as exc:
        report.outcome = f"flow failed: {exc!r}"[:300]
        report.run_seconds = run.seconds
        keep_evidence(report, watched, cluster, namespace)
        raise
    report.run_seconds = run.seconds
    report.outcome = "completed, right sum" if result == EXPECTED else \
        f"completed, WRONG sum {result} != {EXPECTED}"
    # The recorders see the last events a moment after the flow does; the API's own list is the
    # reference for how many pods exist.
    listed = len([line for line in cluster.kubectl(
        "get", "pods", "-n", namespace, "-o", "name").stdout.splitlines() if line.strip()])
    wait_for(lambda: watched.completed() >= N_TASKS and len(watched.pods.snapshot()) >= listed,
             60, "the recorders to see every TaskRun Completed and every pod", interval=0.1)
    accounting = account(watched.pods, watched.taskruns, N_TASKS)
    report.accounting = accounting
    report.write()
    assert result == EXPECTED
    assert accounting.faultless(), accounting
    return accounting


def test_operator_sigkilled_10_times(namespace: str, operator: OperatorProcess,
                                     watched: Watched, cluster: Cluster) -> None:
    rng = random.Random(SEED)
    report = FaultReport("operator-sigkill", notes=[f"seed {SEED}"])
    run = start_run(namespace)
    # Random moments over the run: progress p = (created + completed) / 2N, from the submission
    # burst to the last tenth, each at a random sub-second offset after p is reached.
    moments = sorted(rng.uniform(0.02, 0.85) for _ in range(10))
    def progress() -> float:
        return (watched.created() + watched.completed()) / (2 * N_TASKS)

    for p in moments:
        wait_for(lambda p=p: progress() >= p or run.done,  # type: ignore[misc]
                 RUN_TIMEOUT, f"progress {p:.2f}", interval=0.05)
        assert not run.done, f"the run ended before kill {report.injected + 1}: {run.error!r}"
        time.sleep(rng.uniform(0, 0.5))  # the random moment itself, not a wait for a condition
        down = time.monotonic()
        operator.kill()
        operator.start()
        fault_end = time.monotonic()
        report.injected += 1
        report.fault_seconds.append(fault_end - down)
        report.recovered(wait_recovery(watched.taskruns, fault_end))
    finish(report, run, watched, cluster, namespace)
    assert report.injected == 10


def test_apiserver_restarted(namespace: str, operator: OperatorProcess, watched: Watched,
                             cluster: Cluster) -> None:
    report = FaultReport("apiserver-restart")
    run = start_run(namespace)
    wait_completed(watched, N_TASKS / 3, run, "a third of the tasks")
    assert not run.done
    report.mark("API server restarting")
    report.fault_seconds.append(cluster_command(cluster, "restart-apiserver"))
    fault_end = time.monotonic()
    report.mark("API server ready again")
    report.injected = 1
    report.recovered(wait_recovery(watched.taskruns, fault_end))
    finish(report, run, watched, cluster, namespace)
    assert operator.process is not None and operator.process.poll() is None, \
        "the operator exited after the API server restart"


MINIO_DOWN_SECONDS = 30.0


def test_minio_down_30_seconds(namespace: str, operator: OperatorProcess, watched: Watched,
                               cluster: Cluster) -> None:
    report = FaultReport("minio-down-30s")
    run = start_run(namespace)
    wait_completed(watched, N_TASKS / 3, run, "a third of the tasks")
    assert not run.done
    stopped = time.monotonic()
    report.mark("MinIO stopping")
    cluster_command(cluster, "stop-minio")
    try:
        time.sleep(MINIO_DOWN_SECONDS)  # the fault's duration
    finally:
        cluster_command(cluster, "start-minio")
    fault_end = time.monotonic()
    report.mark("MinIO ready again")
    report.injected = 1
    report.fault_seconds.append(fault_end - stopped)
    report.recovered(wait_recovery(watched.taskruns, fault_end))
    finish(report, run, watched, cluster, namespace)


# -- the flow pod of a FlowRun deleted while it runs ----------------------------------------------


# Retries: a user who wants the flow to survive its pod says so; the runner's namespace is the
# flow pod's own.
@flow(name="many-doubles", retries=2, task_runner=KubernetesTaskRunner())
def many_doubles_flow(n: int) -> int:
    return sum(double.map(list(range(n))).result())


def test_flow_pod_deleted_while_running(namespace: str, flow_runner_rbac: str,
                                        operator: OperatorProcess, watched: Watched,
                                        cluster: Cluster, kube_api: Any) -> None:
    from kubernetes import client

    from flowpod.kubernetes import submit

    report = FaultReport("flow-pod-deleted")
    started = time.monotonic()
    handle = submit(many_doubles_flow, {"n": N_TASKS}, namespace=namespace)
    wait_for(lambda: watched.completed() >= N_TASKS / 3, RUN_TIMEOUT, "a third of the tasks",
             interval=0.05)
    flow_pods = [p for p in watched.pods.snapshot()
                 if (p["metadata"].get("labels") or {}).get("flowpod.dev/role") == "flow"]
    assert len(flow_pods) == 1, [p["metadata"]["name"] for p in flow_pods]
    deleted = time.monotonic()
    report.mark(f"deleting flow pod {flow_pods[0]['metadata']['name']}")
    client.CoreV1Api(kube_api).delete_namespaced_pod(flow_pods[0]["metadata"]["name"],
                                                     namespace, grace_period_seconds=0)
    report.injected = 1
    fault_end = time.monotonic()
    report.fault_seconds.append(fault_end - deleted)
    try:
        state = handle.wait(RUN_TIMEOUT)
        report.outcome = f"FlowRun {state}: {handle.message}"[:300]
        report.run_seconds = time.monotonic() - started
        report.recovered(wait_recovery(watched.taskruns, fault_end, timeout=60))
        assert handle.state == "Completed", (handle.state, handle.message)
        assert handle.result() == EXPECTED
    finally:
        report.run_seconds = report.run_seconds or time.monotonic() - started
        task_pods = [p for p in watched.pods.snapshot()
                     if (p["metadata"].get("labels") or {}).get("flowpod.dev/role") != "flow"]
        flow_pod_count = len(watched.pods.snapshot()) - len(task_pods)
        report.notes.append(f"flow pods {flow_pod_count}")
        report.accounting = account(watched.pods, watched.taskruns, N_TASKS)
        report.write()
    assert report.accounting.faultless(), report.accounting
    # Resumed, not rerun: the second flow pod adopted every TaskRun the first had created.
    assert report.accounting.taskruns == N_TASKS, report.accounting
    assert flow_pod_count == 2
