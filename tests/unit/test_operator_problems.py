"""Naming why an attempt cannot start or why it ended (flowpod_operator.problems), memory
quantities (flowpod_operator.memory), the raised limit on the next pod, and the pending
deadline setting."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flowpod._contract.resources import TaskRunResource
from flowpod._contract.states import StateName
from flowpod_operator.memory import format_memory, parse_memory, raised_limit
from flowpod_operator.pods import pod_manifest
from flowpod_operator.problems import create_refusal, ended_pod, pending_pod_trouble
from flowpod_operator.settings import DEFAULT_PENDING_TIMEOUT_SECONDS, OperatorConfig


@pytest.mark.parametrize(
    ("status", "message", "reason", "permanent"),
    [
        (403, 'error looking up service account ns/x: serviceaccount "x" not found',
         "ServiceAccountNotFound", True),
        (403, 'pods "p" is forbidden: exceeded quota: compute, requested: cpu=1', "QuotaExceeded",
         False),
        (403, 'pods is forbidden: User "system:serviceaccount:x:y" cannot create resource',
         "Forbidden", True),
        (422, 'Pod "p" is invalid: spec.containers[0].image: Required value', "InvalidPodSpec",
         True),
        (404, "namespaces \"gone\" not found", "PodCreateFailed", False),
    ],
)
def test_create_refusals_are_named(status: int, message: str, reason: str,
                                   permanent: bool) -> None:
    body = json.dumps({"kind": "Status", "message": message})
    trouble = create_refusal(status, body, "p-1")
    assert trouble.reason == reason and trouble.permanent is permanent
    assert trouble.message.startswith("Pod p-1 could not be created: ")
    assert message in trouble.message


def _pending(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p-1"}, "status": {"phase": "Pending", **status}}


def test_pending_pods_say_why() -> None:
    assert pending_pod_trouble(_pending()) is None
    creating = _pending(containerStatuses=[{"state": {"waiting": {"reason": "ContainerCreating"}}}])
    assert pending_pod_trouble(creating) is None
    missing_map = _pending(containerStatuses=[{"state": {"waiting": {
        "reason": "CreateContainerConfigError", "message": 'configmap "cfg" not found'}}}])
    found = pending_pod_trouble(missing_map)
    assert found is not None and found.reason == "ConfigMapNotFound" and found.permanent
    backoff = _pending(containerStatuses=[{"state": {"waiting": {"reason": "ImagePullBackOff"}}}])
    found = pending_pod_trouble(backoff)
    assert found is not None and found.reason == "ImagePullBackOff" and not found.permanent


def test_ended_pods_follow_the_taxonomy() -> None:
    def failed(**status: Any) -> dict[str, Any]:
        return {"metadata": {"name": "p-1"}, "status": {"phase": "Failed", **status}}

    evicted = ended_pod(failed(reason="Evicted", message="The node was low on memory."),
                        None, None)
    assert evicted[:2] == (StateName.CRASHED, "Evicted") and "low on memory" in (evicted[2] or "")
    timed_out = ended_pod(failed(reason="DeadlineExceeded"), 5.0, None)
    assert timed_out[:2] == (StateName.TIMED_OUT, "DeadlineExceeded")
    no_outcome = ended_pod(failed(containerStatuses=[{"state": {"terminated": {
        "reason": "Error", "exitCode": 3}}}]), None, None)
    assert no_outcome[:2] == (StateName.CRASHED, "NoOutcome") and "exit code 3" in no_outcome[2]
    assert no_outcome[2].endswith("(exit code 3)"), "a plain Error adds nothing"
    never_ran = ended_pod(failed(containerStatuses=[{"state": {"terminated": {
        "reason": "StartError", "exitCode": 128,
        "message": "failed to create containerd task:\n  context deadline exceeded"}}}]),
        None, None)
    assert never_ran[:2] == (StateName.CRASHED, "NoOutcome")
    assert never_ran[2] is not None and never_ran[2].endswith(
        "(exit code 128, StartError: failed to create containerd task: context deadline exceeded)")
    user = ended_pod(failed(), None, StateName.FAILED)
    assert user == (StateName.FAILED, None, None)
    unlimited = ended_pod(failed(containerStatuses=[{"state": {"terminated": {
        "reason": "OOMKilled", "exitCode": 137}}}]), None, None)
    assert unlimited[1] == "OOMKilled" and "no memory limit" in (unlimited[2] or "")


def test_memory_quantities() -> None:
    assert parse_memory("256Mi") == 256 * 2**20 and parse_memory("1G") == 10**9
    assert parse_memory(1024) == 1024
    assert format_memory(512 * 2**20) == "512Mi" and format_memory(2**30) == "1Gi"
    assert raised_limit("256Mi", 2, "1Gi") == "512Mi"
    assert raised_limit("768Mi", 2, "1Gi") == "1Gi"
    assert raised_limit("1Gi", 2, "1Gi") is None
    with pytest.raises(ValueError, match="not a memory quantity"):
        parse_memory("lots")


def test_the_next_pod_gets_the_raised_limit_and_a_request_no_higher() -> None:
    taskrun = TaskRunResource.from_object({
        "apiVersion": "flowpod.dev/v1alpha1", "kind": "TaskRun",
        "metadata": {"name": "t", "namespace": "ns", "uid": "u"},
        "spec": {"taskName": "t", "taskKey": "k", "runName": "t-0", "payload": "p",
                 "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "256Mi"}}},
        "status": {"attempt": 1, "memoryLimit": "512Mi"},
    })
    container = pod_manifest(taskrun, 2, OperatorConfig())["spec"]["containers"][0]
    assert container["resources"]["limits"]["memory"] == "512Mi"
    assert container["resources"]["requests"]["memory"] == "512Mi"


def test_pending_timeout_setting() -> None:
    assert OperatorConfig.from_env({}).pending_timeout_seconds == DEFAULT_PENDING_TIMEOUT_SECONDS
    env = {"FLOWPOD_OPERATOR_PENDING_TIMEOUT_SECONDS": "45"}
    assert OperatorConfig.from_env(env).pending_timeout_seconds == 45
    off = {"FLOWPOD_OPERATOR_PENDING_TIMEOUT_SECONDS": "0"}
    assert OperatorConfig.from_env(off).pending_timeout_seconds is None


def test_the_operator_s_slim_pod_keeps_why_a_container_never_ran() -> None:
    from flowpod_operator.observed import slim_pod

    full = {"metadata": {"name": "p-1", "managedFields": [{"big": "x" * 1000}]},
            "spec": {"containers": [{"name": "task"}]},
            "status": {"phase": "Failed", "containerStatuses": [{"name": "task", "state": {
                "terminated": {"reason": "StartError", "exitCode": 128, "startedAt": None,
                               "message": "failed to create containerd task: " + "y" * 400}}}]}}
    slim = slim_pod(full)
    assert "managedFields" not in slim["metadata"]
    state, reason, message = ended_pod(slim, None, None)
    assert (state, reason) == (StateName.CRASHED, "NoOutcome")
    assert message is not None and "exit code 128, StartError: failed to create containerd task" \
        in message and len(message) < 450
