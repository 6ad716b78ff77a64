# ruff: noqa: F811 - pytest fixtures imported from operator_fixtures are parameters here
"""The operator on the real test cluster: TaskRuns in, pods and states out.

Each test gets a fresh namespace and its own operator subprocess (running as the
``flowpod-operator`` ServiceAccount, RBAC from the Helm chart). Task payloads are
written with ``flowpod._storage.run_files``, as the KubernetesTaskRunner does, and the TaskRun
objects are
created by the admin. Waits poll conditions with timeouts; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from flowpod import task
from flowpod._contract.records import Outcome
from flowpod._contract.resources import TaskRunSpec
from flowpod._kube.payloads import TaskPayload, write_payload
from flowpod._storage.run_files import read_outcome, read_result

from .harness import Cluster
from .operator_fixtures import (  # noqa: F401 - fixtures
    OperatorProcess,
    operator,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
    wait_until,
)

GROUP, VERSION, PLURAL = "flowpod.dev", "v1alpha1", "taskruns"
FINAL = {"Completed", "Cached", "Failed", "TimedOut", "Crashed"}


# -- tasks the pods run (pickled by value: this module is not installed in the "image") ---------


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def fail_always() -> None:
    raise ValueError("boom")


@task(retry_condition_fn=lambda task, task_run, state: False)
def fail_no_retry() -> None:
    raise ValueError("not worth retrying")


@task
def sleep_for(seconds: float) -> str:
    import time as _time

    _time.sleep(seconds)
    return "done"


@task
def unstoppable(seconds: float) -> str:
    """Blocks the timer signal the pod's own timeout uses, so only the kubelet can stop it."""
    import signal
    import time as _time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    _time.sleep(seconds)
    return "done"


@task
def hog(megabytes: int) -> int:
    data = b"x" * (megabytes << 20)
    return len(data)


@task
def chatty() -> str:
    print("hello from the task pod")
    return "ok"


# -- helpers ------------------------------------------------------------------------------------


def _custom(kube_api: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(kube_api)


def _core(kube_api: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube_api)


def _store() -> Any:
    from flowpod._storage.config import store_from_env

    store = store_from_env()
    assert store is not None, "the cluster's S3 settings are not in the environment"
    return store


def submit(
    kube_api: Any,
    namespace: str,
    task_obj: Any,
    parameters: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    retries: int = 0,
    delays: list[float] | None = None,
    jitter: float | None = None,
    timeout: float | None = None,
    cache_key: str | None = None,
    cache_expiration: float | None = None,
    resources: dict[str, Any] | None = None,
    **extra: Any,
) -> str:
    """Write the payload and create the TaskRun (``extra``: more spec fields); returns its
    name."""
    name = name or f"{task_obj.name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
    payload = TaskPayload(
        task=task_obj,
        parameters=parameters or {},
        run_name=f"{task_obj.name}-0",
        task_run_id=str(uuid.uuid4()),
        cache_key=cache_key,
        cache_expiration_seconds=cache_expiration,
        retries=retries,
    )
    key = write_payload(_store(), namespace, name, payload)
    spec = TaskRunSpec(
        task_name=task_obj.name,
        task_key=task_obj.task_key,
        run_name=payload.run_name,
        payload=key,
        retries=retries,
        retry_delay_seconds=delays or [],
        retry_jitter_factor=jitter,
        timeout_seconds=timeout,
        cache_key=cache_key,
        cache_expiration_seconds=cache_expiration,
        resources=resources,
        **extra,
    )
    _custom(kube_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, spec.to_manifest(name, namespace)
    )
    return name


def get_taskrun(kube_api: Any, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = _custom(kube_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    return obj


def wait_final(kube_api: Any, namespace: str, name: str, timeout: float = 90) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        obj = get_taskrun(kube_api, namespace, name)
        return obj if obj.get("status", {}).get("state") in FINAL else None

    result: dict[str, Any] = wait_until(final, timeout, f"TaskRun {namespace}/{name} to finish")
    return result


def pods_of(kube_api: Any, namespace: str, name: str | None = None) -> list[dict[str, Any]]:
    selector = f"flowpod.dev/taskrun={name}" if name else "flowpod.dev/taskrun"
    pods = _core(kube_api).list_namespaced_pod(namespace, label_selector=selector).items
    return [kube_api.sanitize_for_serialization(pod) for pod in pods]


def result_of(taskrun: dict[str, Any]) -> Any:
    return read_result(_store(), taskrun["status"]["resultRef"])


def states(taskrun: dict[str, Any]) -> list[str]:
    return [entry["state"] for entry in taskrun["status"]["history"]]


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- tests --------------------------------------------------------------------------------------


def test_result_comes_back(kube_api: Any, namespace: str, operator: OperatorProcess) -> None:
    name = submit(kube_api, namespace, add, {"x": 2, "y": 3})
    taskrun = wait_final(kube_api, namespace, name)
    assert taskrun["status"]["state"] == "Completed", (taskrun["status"], operator.logs())
    assert result_of(taskrun) == 5
    assert states(taskrun)[0] == "Pending" and states(taskrun)[-1] == "Completed"
    assert "Running" in states(taskrun)
    (pod,) = pods_of(kube_api, namespace, name)
    assert pod["metadata"]["name"] == f"{name}-1"
    assert pod["spec"]["restartPolicy"] == "Never"
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("TaskRun", name, True)
    assert taskrun["status"]["duration"]
    # The kubelet carried the pod's outcome in its termination message (the non-root container
    # could write it): the same record as the store's, which the operator need not read.
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    told = Outcome.from_termination_message(terminated.get("message"))
    stored = read_outcome(_store(), namespace, name, 1)
    assert told is not None and stored is not None, terminated
    assert told.to_dict() == stored.to_dict() and told.result_ref == taskrun["status"]["resultRef"]


def test_concurrent_pods(kube_api: Any, namespace: str, operator: OperatorProcess) -> None:
    names = [submit(kube_api, namespace, sleep_for, {"seconds": 3}) for _ in range(4)]

    def all_running_together() -> bool:
        running = [pod for pod in pods_of(kube_api, namespace)
                   if pod["status"].get("phase") == "Running"]
        return len(running) == len(names)

    wait_until(all_running_together, 60, "all four pods running at the same time")
    for name in names:
        assert wait_final(kube_api, namespace, name)["status"]["state"] == "Completed"


def test_timeout_ends_timed_out(kube_api: Any, namespace: str, operator: OperatorProcess) -> None:
    name = submit(kube_api, namespace, sleep_for, {"seconds": 60}, timeout=2)
    (pod,) = wait_until(lambda: pods_of(kube_api, namespace, name), 30, "the pod")
    # The pod stops the task at 2 s itself; the kubelet's deadline is the backstop after it.
    assert pod["spec"]["activeDeadlineSeconds"] == 2 + 30
    taskrun = wait_final(kube_api, namespace, name, timeout=60)
    assert taskrun["status"]["state"] == "TimedOut", taskrun["status"]
    assert "timeout_seconds=2" in taskrun["status"]["message"]


def test_a_task_that_cannot_be_stopped_ends_timed_out_at_the_deadline(
    kube_api: Any, namespace: str, operator_factory: Any
) -> None:
    # A short allowance, so the kubelet's deadline comes 2 s after the 1 s timeout.
    operator_factory(extra_env={"FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS": "2"})
    name = submit(kube_api, namespace, unstoppable, {"seconds": 600}, timeout=1)
    taskrun = wait_final(kube_api, namespace, name, timeout=150)
    assert taskrun["status"]["state"] == "TimedOut", taskrun["status"]
    (pod,) = pods_of(kube_api, namespace, name)
    assert pod["status"]["reason"] == "DeadlineExceeded", pod["status"]
    assert "ended by the kubelet at activeDeadlineSeconds=3" in taskrun["status"]["message"]


def test_a_task_over_its_memory_limit_is_oom_killed_crashed_and_retried(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    name = submit(kube_api, namespace, hog, {"megabytes": 512}, retries=1, delays=[0],
                  resources={"limits": {"memory": "96Mi"}})
    taskrun = wait_final(kube_api, namespace, name, timeout=120)
    assert taskrun["status"]["state"] == "Crashed", taskrun["status"]
    assert taskrun["status"]["attempt"] == 2
    assert states(taskrun).count("Crashed") == 2 and "AwaitingRetry" in states(taskrun)
    assert "OOMKilled" in taskrun["status"]["message"], taskrun["status"]
    for pod in pods_of(kube_api, namespace, name):
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["reason"] == "OOMKilled", terminated


def test_oom_memory_raise_gives_the_next_attempt_more_memory(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    # A real OOMKill on the node: 96Mi is too little for 120 MB; the retry gets 192Mi.
    name = submit(kube_api, namespace, hog, {"megabytes": 120}, retries=2, delays=[0],
                  resources={"limits": {"memory": "96Mi"}},
                  oom_memory_raise={"factor": 2, "max": "256Mi"})
    taskrun = wait_final(kube_api, namespace, name, timeout=150)
    status = taskrun["status"]
    assert status["state"] == "Completed", status
    assert result_of(taskrun) == 120 << 20
    assert status["attempt"] == 2 and status["memoryLimit"] == "192Mi"
    crashed = [h for h in status["history"] if h["state"] == "Crashed"]
    assert len(crashed) == 1 and crashed[0]["reason"] == "OOMKilled", status["history"]
    assert "OOMKilled at limit 96Mi" in crashed[0]["message"]
    waiting = [h for h in status["history"] if h["state"] == "AwaitingRetry"]
    assert "memory limit raised to 192Mi" in waiting[0]["message"]
    limits = {pod["metadata"]["labels"]["flowpod.dev/attempt"]:
              pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
              for pod in pods_of(kube_api, namespace, name)}
    assert limits == {"1": "96Mi", "2": "192Mi"}


def _events(kube_api: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    items = _core(kube_api).list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={name}").items
    return [(e.type, e.reason, e.message or "") for e in items]


def test_a_missing_secret_ends_the_taskrun_at_once_with_the_reason(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    # The TaskRun case: the pod's S3 credentials come from a Secret that is not there.
    store = _store()
    storage = {"bucket": store.bucket, "prefix": store.prefix,
               "credentialsSecret": {"name": "flowpod-s3-missing"}}
    if store.endpoint_url:
        storage["endpoint"] = store.endpoint_url
    started = time.monotonic()
    name = submit(kube_api, namespace, add, {"x": 1, "y": 2}, retries=3, storage=storage,
                  pending_timeout_seconds=600)
    taskrun = wait_final(kube_api, namespace, name, timeout=60)
    status = taskrun["status"]
    assert status["state"] == "Crashed" and status["reason"] == "SecretNotFound", status
    assert 'secret "flowpod-s3-missing" not found' in status["message"], status
    assert status["attempt"] == 1  # waiting or retrying cannot create the Secret
    assert time.monotonic() - started < 60  # long before the 600 s pending deadline
    wait_until(lambda: any(reason == "SecretNotFound" for _, reason, _ in
                           _events(kube_api, namespace, name)) or None, 30,
               "a SecretNotFound event")
    wait_until(lambda: pods_of(kube_api, namespace, name) == [] or None, 30,
               "the attempt's pod to be removed")


def test_an_image_that_cannot_be_pulled_says_so_then_ends_at_the_pending_deadline(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    name = submit(kube_api, namespace, add, {"x": 1, "y": 2},
                  image="flowpod:no-such-tag", pending_timeout_seconds=20)

    def says_why() -> dict[str, Any] | None:
        status = get_taskrun(kube_api, namespace, name).get("status") or {}
        return status if status.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    status = wait_until(says_why, 15, "the TaskRun to say why it cannot start")
    assert status["state"] == "Pending" and "flowpod:no-such-tag" in status["message"]
    taskrun = wait_final(kube_api, namespace, name, timeout=60)
    status = taskrun["status"]
    assert status["state"] == "Crashed" and status["reason"] == "PendingTimeout", status
    assert "could not start within 20 s" in status["message"]
    wait_until(lambda: pods_of(kube_api, namespace, name) == [] or None, 30,
               "the attempt's pod to be removed")


def test_kubectl_logs_shows_a_task_pods_output(
    cluster: Cluster, kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    name = submit(kube_api, namespace, chatty)
    assert wait_final(kube_api, namespace, name)["status"]["state"] == "Completed"
    out = cluster.kubectl("logs", f"{name}-1", "-n", namespace).stdout
    assert "hello from the task pod" in out, out


def test_retries_with_delay_list(kube_api: Any, namespace: str, operator: OperatorProcess) -> None:
    name = submit(kube_api, namespace, fail_always, retries=2, delays=[2, 4])
    taskrun = wait_final(kube_api, namespace, name, timeout=120)
    assert taskrun["status"]["state"] == "Failed"
    assert taskrun["status"]["attempt"] == 3
    assert "Retries are exhausted" in taskrun["status"]["message"]
    assert states(taskrun).count("AwaitingRetry") == 2
    pods = sorted(pods_of(kube_api, namespace, name), key=lambda p: p["metadata"]["name"])
    assert [p["metadata"]["name"] for p in pods] == [f"{name}-1", f"{name}-2", f"{name}-3"]
    # The gap between a failure and the next attempt is the listed delay.
    history = taskrun["status"]["history"]
    waits = [e for e in history if e["state"] == "AwaitingRetry"]
    retrying = [e for e in history if e["state"] == "Retrying"]
    gaps = [(_time(r["timestamp"]) - _time(w["timestamp"])).total_seconds()
            for w, r in zip(waits, retrying, strict=True)]
    assert 2 <= gaps[0] < 3.5 and 4 <= gaps[1] < 5.5, gaps
    created = [_time(p["metadata"]["creationTimestamp"]) for p in pods]
    assert (created[1] - created[0]).total_seconds() >= 2
    assert (created[2] - created[1]).total_seconds() >= 4
    # The user sees the retries and the failure as events on the TaskRun.
    def reasons() -> list[str]:
        events = _core(kube_api).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={name}"
        ).items
        return sorted(event.reason for event in events)

    wait_until(lambda: reasons() == ["AwaitingRetry", "AwaitingRetry", "Failed"], 30,
               "the TaskRun's events")


def test_retry_condition_stops_retries(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    name = submit(kube_api, namespace, fail_no_retry, retries=3)
    taskrun = wait_final(kube_api, namespace, name)
    assert taskrun["status"]["state"] == "Failed"
    assert taskrun["status"]["attempt"] == 1
    assert "retry_condition_fn declined" in taskrun["status"]["message"]
    assert len(pods_of(kube_api, namespace, name)) == 1


def test_cache_hit_creates_no_pod_and_expiry_brings_it_back(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    cache_key = f"op-test-{uuid.uuid4().hex}"
    first = submit(kube_api, namespace, add, {"x": 20, "y": 22}, cache_key=cache_key,
                   cache_expiration=6)
    done = wait_final(kube_api, namespace, first)
    assert done["status"]["state"] == "Completed" and result_of(done) == 42
    second = submit(kube_api, namespace, add, {"x": 20, "y": 22}, cache_key=cache_key,
                    cache_expiration=6)
    cached = wait_final(kube_api, namespace, second)
    assert cached["status"]["state"] == "Cached", cached["status"]
    assert result_of(cached) == 42
    assert pods_of(kube_api, namespace, second) == []
    assert len(pods_of(kube_api, namespace)) == 1
    # After the record expires the task runs again: a pod comes back.
    record = _store().get(f"cache/{cache_key}.json")
    import json

    expires = _time(json.loads(record)["expires"])
    wait_until(lambda: datetime.now(expires.tzinfo) > expires, 30, "the cache record to expire")
    third = submit(kube_api, namespace, add, {"x": 20, "y": 22}, cache_key=cache_key,
                   cache_expiration=6)
    rerun = wait_final(kube_api, namespace, third)
    assert rerun["status"]["state"] == "Completed"
    assert len(pods_of(kube_api, namespace, third)) == 1


def test_deleted_pod_is_crashed_and_retried(
    kube_api: Any, namespace: str, operator_factory: Callable[..., OperatorProcess]
) -> None:
    # The run's own retries only: the operator's platform retries are off here (the next test
    # covers them).
    operator_factory(extra_env={"FLOWPOD_OPERATOR_INFRASTRUCTURE_RETRIES": "0"})
    name = submit(kube_api, namespace, sleep_for, {"seconds": 30}, retries=1)

    def running() -> bool:
        pods = pods_of(kube_api, namespace, name)
        return bool(pods) and pods[0]["status"].get("phase") == "Running"

    wait_until(running, 30, "attempt 1 running")
    _core(kube_api).delete_namespaced_pod(f"{name}-1", namespace, grace_period_seconds=0)

    def second_attempt() -> dict[str, Any] | None:
        obj = get_taskrun(kube_api, namespace, name)
        return obj if obj["status"].get("attempt") == 2 else None

    taskrun = wait_until(second_attempt, 60, "attempt 2")
    assert "Crashed" in states(taskrun), states(taskrun)
    _core(kube_api).delete_namespaced_pod(f"{name}-2", namespace, grace_period_seconds=0)
    final = wait_final(kube_api, namespace, name)
    assert final["status"]["state"] == "Crashed"
    assert final["status"]["reason"] == "PodDeleted", final["status"]


def test_a_deleted_pod_gets_the_operators_platform_retry_and_loses_nothing(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    # No retries of its own: the pod deleted under it is the platform's fault, and the operator
    # starts another attempt, which completes.
    name = submit(kube_api, namespace, sleep_for, {"seconds": 5})

    def running() -> bool:
        pods = pods_of(kube_api, namespace, name)
        return bool(pods) and pods[0]["status"].get("phase") == "Running"

    wait_until(running, 30, "attempt 1 running")
    _core(kube_api).delete_namespaced_pod(f"{name}-1", namespace, grace_period_seconds=0)
    final = wait_final(kube_api, namespace, name, timeout=120)
    status = final["status"]
    assert status["state"] == "Completed" and status["attempt"] == 2, status
    crashed = [h for h in status["history"] if h["state"] == "Crashed"]
    assert len(crashed) == 1 and crashed[0]["reason"] == "PodDeleted", status["history"]


def test_operator_killed_mid_run_recovers(
    kube_api: Any, namespace: str, operator: OperatorProcess
) -> None:
    names = [submit(kube_api, namespace, sleep_for, {"seconds": 2}) for _ in range(6)]
    names += [submit(kube_api, namespace, fail_always, retries=1, delays=[1]) for _ in range(3)]
    wait_until(lambda: len(pods_of(kube_api, namespace)) >= 3, 30, "some pods")
    operator.kill()
    # Work continues without the operator (pods finish); then it comes back.
    operator.start()
    for name in names:
        taskrun = wait_final(kube_api, namespace, name, timeout=120)
        expected = "Completed" if name.startswith("sleep") else "Failed"
        assert taskrun["status"]["state"] == expected, (name, taskrun["status"])
        attempts = taskrun["status"]["attempt"]
        pods = pods_of(kube_api, namespace, name)
        assert sorted(p["metadata"]["name"] for p in pods) == sorted(
            f"{name}-{n}" for n in range(1, attempts + 1)
        )
        # One history entry per transition: nothing doubled by the restart.
        pairs = [(e["state"], e["attempt"]) for e in taskrun["status"]["history"]]
        assert len(pairs) == len(set(pairs)), pairs
        assert states(taskrun)[-1] == expected


def test_invalid_taskrun_is_rejected(kube_api: Any, namespace: str, cluster: Cluster) -> None:
    from kubernetes.client.exceptions import ApiException

    body = {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TaskRun",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {"taskName": "t", "taskKey": "k", "runName": "r", "payload": "p",
                 "retries": -1},
    }
    with pytest.raises(ApiException) as info:
        _custom(kube_api).create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
    assert info.value.status == 422
    assert "spec.retries" in str(info.value.body)



@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("watch", "taskruns.flowpod.dev", True),
        ("patch", "taskruns.flowpod.dev/status", True),
        ("create", "pods", True),
        ("delete", "pods", True),
        ("create", "events", True),
        ("get", "secrets", False),
        ("list", "secrets", False),
        ("patch", "taskruns.flowpod.dev", False),
        ("delete", "taskruns.flowpod.dev", False),
        ("create", "flowruns.flowpod.dev", False),
        ("update", "pods", False),
    ],
)
def test_operator_rbac_is_least_privilege(
    cluster: Cluster, operator_rbac: None, verb: str, resource: str, allowed: bool
) -> None:
    subresource: list[str] = []
    if "/" in resource:
        resource, sub = resource.split("/")
        subresource = [f"--subresource={sub}"]
    proc = cluster.kubectl(
        "auth", "can-i", verb, resource, *subresource, "--all-namespaces",
        "--as=system:serviceaccount:flowpod-system:flowpod-operator", check=False,
    )
    assert proc.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, proc.stdout)


def test_operator_bench_runs(cluster: Cluster, operator_rbac: None) -> None:
    """bench/operator_throughput.py still works end to end (a tiny run; figures not asserted)."""
    import json
    import subprocess
    import sys

    from .harness import REPO_ROOT

    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "operator_throughput.py"), "--count", "5",
         "--cache-count", "5", "--json"],
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["completed"] == 5 and figures["cache_states"] == ["Cached"]
    assert figures["pod_p50_ms"] >= 0 and figures["rss_mb"] > 0
