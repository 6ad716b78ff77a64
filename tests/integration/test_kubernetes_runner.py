"""A flow on this machine sends its submitted tasks to the test cluster (KubernetesTaskRunner).

The real chain: the runner writes payloads to the cluster's S3 server and creates TaskRuns as the
admin user; the operator (running as its ServiceAccount, ``operator`` fixture) creates one pod per
attempt; the kubelet runs ``python -m flowpod.pod`` in a container of the image built from this
checkout, which writes results and outcomes to S3; the runner's watch sees the final state and
reads the result back.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest

from flowpod import flow, task
from flowpod.exceptions import CrashedRun
from flowpod.kubernetes import KubernetesTaskRunner

from .harness import Cluster
from .operator_fixtures import (  # noqa: F401 - fixtures, used by name
    operator,
    operator_factory,
    operator_kubeconfig,
    operator_rbac,
)

pytestmark = [pytest.mark.timeout(300), pytest.mark.usefixtures("operator")]


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def nap(seconds: float) -> tuple[float, float]:
    started = time.time()
    time.sleep(seconds)
    return started, time.time()


@task
def boom(text: str) -> None:
    raise ValueError(text)


def by_token(ctx: Any, params: dict[str, Any]) -> str:
    return f"square-{params['token']}"


@task(cache_key_fn=by_token)
def square(x: int, token: str) -> int:
    return x * x


def pods_of(cluster: Cluster, namespace: str, taskrun: str) -> list[str]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"flowpod.dev/taskrun={taskrun}",
                          "-o", "name").stdout
    return [line for line in out.splitlines() if line.strip()]


def test_submit_and_map_return_results(namespace: str) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)

    @flow(task_runner=runner)
    def pipeline() -> tuple[int, list[int]]:
        single = add.submit(1, 2)
        many = add.map([10, 20, 30], 1)
        return single.result(timeout=120), many.result(timeout=120)

    assert pipeline() == (3, [11, 21, 31])


def test_submitted_tasks_run_as_concurrent_pods(namespace: str,
                                                cluster: Cluster) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)

    @flow(task_runner=runner)
    def pipeline() -> list[tuple[float, float]]:
        return nap.map([3.0] * 4).result(timeout=180)

    windows = pipeline()
    # Every pod was still running when the last one started: they overlapped in time.
    assert max(start for start, _ in windows) < min(end for _, end in windows)
    out = cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout
    assert len([line for line in out.splitlines() if line.strip()]) == 4


def test_a_failing_task_fails_the_flow(namespace: str) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)

    @flow(task_runner=runner)
    def pipeline() -> None:
        boom.submit("bad input").result(timeout=120)

    with pytest.raises(ValueError, match="bad input"):
        pipeline()


def test_a_cache_hit_creates_no_pod(namespace: str,
                                    cluster: Cluster) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)
    token = uuid.uuid4().hex[:12]
    seen: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> int:
        future = square.submit(12, token)
        value = future.result(timeout=120)
        seen.append(future)
        return value

    assert pipeline() == 144
    assert pipeline() == 144
    first, second = seen
    assert first.state.name == "Completed" and second.state.name == "Cached"
    assert len(pods_of(cluster, namespace, first.taskrun_name)) == 1
    assert pods_of(cluster, namespace, second.taskrun_name) == []


calls: list[int] = []


@task(cache_key_fn=by_token)
def counted_square(x: int, token: str) -> int:
    calls.append(x)
    return x * x


def test_the_local_engine_and_the_cluster_share_cache_records(namespace: str,
                                                              cluster: Cluster) -> None:
    # The cluster's S3 settings are in the environment (the integration fixtures put them there),
    # so the local engine's cache lives in the same bucket as the pods' results.
    token = uuid.uuid4().hex[:12]

    @flow
    def local_pipeline() -> int:
        return counted_square(7, token)

    assert local_pipeline() == 49
    assert calls == [7]

    seen: list[Any] = []

    @flow(task_runner=KubernetesTaskRunner(namespace=namespace))
    def cluster_pipeline() -> int:
        future = counted_square.submit(7, token)
        seen.append(future)
        return future.result(timeout=120)

    assert cluster_pipeline() == 49
    (future,) = seen
    assert future.state.name == "Cached"
    assert pods_of(cluster, namespace, future.taskrun_name) == []
    assert calls == [7]  # computed once, on this machine


@task(retries=2, retry_delay_seconds=0)
def flaky() -> int:
    from flowpod import runtime

    if runtime.task_run.run_count < 2:
        raise RuntimeError("first attempt fails")
    return runtime.task_run.run_count


@task(retries=3, retry_delay_seconds=0, retry_condition_fn=lambda t, r, s: False)
def stubborn() -> None:
    raise KeyError("no retry for this")


@task(timeout_seconds=2)
def sleepy() -> None:
    time.sleep(60)


def test_a_retried_task_returns_the_later_attempts_result(
    namespace: str, cluster: Cluster
) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)
    seen: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> int:
        future = flaky.submit()
        seen.append(future)
        return future.result(timeout=120)

    assert pipeline() == 2
    assert len(pods_of(cluster, namespace, seen[0].taskrun_name)) == 2


def test_retry_condition_fn_stops_retries(namespace: str,
                                          cluster: Cluster) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)
    seen: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = stubborn.submit()
        seen.append(future)
        future.result(timeout=120)

    with pytest.raises(KeyError, match="no retry for this"):
        pipeline()
    assert seen[0].state.name == "Failed"
    assert len(pods_of(cluster, namespace, seen[0].taskrun_name)) == 1


def test_timeout_ends_the_run_timed_out(namespace: str) -> None:
    runner = KubernetesTaskRunner(namespace=namespace)
    seen: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> None:
        future = sleepy.submit()
        seen.append(future)
        future.result(timeout=120)

    started = time.monotonic()
    with pytest.raises(TimeoutError):
        pipeline()
    assert time.monotonic() - started < 30
    assert seen[0].state.name == "TimedOut"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_an_image_that_cannot_start_is_told_in_the_flows_log_and_ended_by_the_deadline(
    namespace: str,
) -> None:
    # The TaskRun case, seen from the flow: before, the TaskRun knew why it hung and
    # the flow's own output said nothing. Now the runner logs the reason once, and the pending
    # deadline ends the run with it.
    runner = KubernetesTaskRunner(namespace=namespace, image="flowpod:no-such-tag",
                                  pending_timeout_seconds=20)
    seen: list[Any] = []

    @flow(task_runner=runner)
    def pipeline() -> int:
        future = add.submit(1, 2)
        seen.append(future)
        return future.result(timeout=120)

    started = time.monotonic()
    # flowpod's logger does not propagate to the root (its own console handler shows records):
    # listen on it directly.
    logs = _Records()
    logging.getLogger("flowpod").addHandler(logs)
    try:
        with pytest.raises(CrashedRun):
            pipeline()
    finally:
        logging.getLogger("flowpod").removeHandler(logs)
    assert time.monotonic() - started < 90
    state = seen[0].state
    assert state.name == "Crashed", state
    assert "could not start within 20 s" in (state.message or "")
    warnings = [r.getMessage() for r in logs.records
                if r.levelno == logging.WARNING and "ImagePull" in r.getMessage()]
    assert warnings, [r.getMessage() for r in logs.records]
    # Once per change of reason, not once per watch event.
    assert len(set(warnings)) == len(warnings)
