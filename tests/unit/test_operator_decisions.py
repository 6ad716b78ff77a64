"""The operator's pure decisions: every transition, retries, crashes, the cache, idempotency.

A tiny simulator applies each PatchStatus the way the API server's merge patch would, so a test
can walk a TaskRun through its life and check that feeding the same observation again is a no-op.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowpod._contract.records import CacheRecord, Outcome
from flowpod._contract.resources import TaskRunResource
from flowpod._contract.retrying import delay_for_retry, jitter_bounds
from flowpod._contract.status import format_duration
from flowpod_operator.decisions import (
    CreatePod,
    Decision,
    DeletePod,
    Event,
    PatchStatus,
    Requeue,
    decide,
    pod_failure_reason,
)
from flowpod_operator.problems import create_refusal

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def make_taskrun(status: dict[str, Any] | None = None, **spec: Any) -> TaskRunResource:
    body: dict[str, Any] = {
        "apiVersion": "flowpod.dev/v1alpha1",
        "kind": "TaskRun",
        "metadata": {"name": "add-abc", "namespace": "ns", "uid": "u-1", "generation": 1,
                     "creationTimestamp": T0.isoformat()},
        "spec": {"taskName": "add", "taskKey": "k", "runName": "add-0",
                 "payload": "runs/ns/add-abc/payload", **spec},
    }
    if status is not None:
        body["status"] = status
    return TaskRunResource.from_object(body)


def apply(taskrun: TaskRunResource, decision: Decision) -> TaskRunResource:
    """What the TaskRun looks like after the decision's status patches (merge patch rules)."""
    body = taskrun.model_dump(mode="json", by_alias=True, exclude_none=True)
    status = dict(body.get("status") or {})
    for patch in decision.of(PatchStatus):
        for key, value in patch.status_patch(status.get("history") or []).items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
    body["status"] = status
    return TaskRunResource.from_object(body)


def pod(attempt: int, phase: str, *, reason: str | None = None,
        terminated: str | None = None, exit_code: int | None = None,
        started: datetime | None = T0) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if started is not None:
        status["startTime"] = started.isoformat().replace("+00:00", "Z")
    if reason:
        status["reason"] = reason
    if terminated or exit_code is not None:
        status["containerStatuses"] = [{"name": "task", "state": {"terminated": {
            "reason": terminated or "Error", "exitCode": exit_code if exit_code is not None else 1,
        }}}]
    return {"metadata": {"name": f"add-abc-{attempt}",
                         "labels": {"flowpod.dev/attempt": str(attempt)}},
            "status": status}


def completed(attempt: int = 1) -> Outcome:
    return Outcome(attempt=attempt, state="Completed",
                   result_ref=f"runs/ns/add-abc/result-{attempt}")


def failed(attempt: int = 1, allowed: bool = True) -> Outcome:
    return Outcome(attempt=attempt, state="Failed", message="Task run encountered an exception",
                   exception="ValueError('boom')", retry_allowed=allowed)


def start(taskrun: TaskRunResource, now: datetime = T0) -> TaskRunResource:
    decision = decide(taskrun, None, None, None, now)
    assert decision.of(CreatePod) == [CreatePod(1)]
    return apply(taskrun, decision)


def running(taskrun: TaskRunResource, attempt: int = 1) -> TaskRunResource:
    return apply(taskrun, decide(taskrun, pod(attempt, "Running"), None, None, T0))


# -- start ----------------------------------------------------------------------------------------


def test_new_taskrun_creates_pod_one_and_goes_pending() -> None:
    decision = decide(make_taskrun(), None, None, None, T0)
    assert decision.of(CreatePod) == [CreatePod(1)]
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "Pending" and patch.fields["attempt"] == 1
    assert patch.fields["pod"] == "add-abc-1"
    assert [entry["state"] for entry in patch.history] == ["Pending"]
    # The pod is created before the status says so: a crash in between re-creates (adopts) it.
    assert isinstance(decision.actions[0], CreatePod)


def test_same_observation_twice_yields_no_duplicate_action() -> None:
    taskrun = start(make_taskrun())
    observed = pod(1, "Pending")
    assert decide(taskrun, observed, None, None, T0).actions == ()
    taskrun = running(taskrun)
    assert decide(taskrun, pod(1, "Running"), None, None, T0).actions == ()
    done = decide(taskrun, pod(1, "Succeeded"), completed(), None, T0)
    taskrun = apply(taskrun, done)
    assert decide(taskrun, pod(1, "Succeeded"), completed(), None, T0).actions == ()
    assert [e["state"] for e in taskrun.status.model_dump()["history"]] == [
        "Pending", "Running", "Completed"
    ]


def test_restart_before_status_patch_repeats_the_same_create() -> None:
    # The operator died after creating the pod and before patching: the same TaskRun (no status)
    # leads to the same pod name, which the API answers with 409 -> adoption.
    fresh = make_taskrun()
    first = decide(fresh, None, None, None, T0)
    again = decide(fresh, None, None, None, T0 + timedelta(seconds=30))
    assert first.of(CreatePod) == again.of(CreatePod) == [CreatePod(1)]


# -- success --------------------------------------------------------------------------------------


def test_pod_running_then_succeeded_completes_with_result_ref() -> None:
    taskrun = running(start(make_taskrun()))
    assert taskrun.status.state == "Running"
    later = T0 + timedelta(seconds=75)
    decision = decide(taskrun, pod(1, "Succeeded"), completed(), None, later)
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "Completed"
    assert patch.fields["stateType"] == "COMPLETED"
    assert patch.fields["resultRef"] == "runs/ns/add-abc/result-1"
    assert patch.fields["duration"] == "1m15s"
    assert decision.of(Event)[0].type == "Normal"
    assert decision.of(CreatePod) == []


def test_fast_pod_records_running_before_completed() -> None:
    taskrun = start(make_taskrun())  # never saw it Running
    decision = decide(taskrun, pod(1, "Succeeded"), completed(), None, T0)
    (patch,) = decision.of(PatchStatus)
    assert [entry["state"] for entry in patch.history] == ["Running", "Completed"]


def test_succeeded_pod_without_outcome_is_crashed() -> None:
    taskrun = running(start(make_taskrun()))
    decision = decide(taskrun, pod(1, "Succeeded"), None, None, T0)
    assert decision.of(PatchStatus)[0].fields["state"] == "Crashed"


# -- failures and retries -------------------------------------------------------------------------


def test_failure_with_delay_list_waits_then_retries_each_delay() -> None:
    taskrun = running(start(make_taskrun(retries=2, retryDelaySeconds=[5, 10])))
    decision = decide(taskrun, pod(1, "Failed", exit_code=1), failed(), None, T0)
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "AwaitingRetry"
    assert patch.fields["stateType"] == "SCHEDULED"
    assert patch.fields["nextRetryAt"] == "2026-01-01T12:00:05Z"
    assert [e["state"] for e in patch.history] == ["Failed", "AwaitingRetry"]
    assert decision.of(Requeue) == [Requeue(5.0)]
    assert decision.of(Event)[0].type == "Warning"
    assert "Retry 1/2" in patch.fields["message"]
    taskrun = apply(taskrun, decision)

    # Before the time: only a requeue for the rest of the wait.
    early = decide(taskrun, pod(1, "Failed"), failed(), None, T0 + timedelta(seconds=2))
    assert early.actions == (Requeue(3.0),)

    # At the time: pod 2.
    due = T0 + timedelta(seconds=5)
    retry = decide(taskrun, pod(1, "Failed"), failed(), None, due)
    assert retry.of(CreatePod) == [CreatePod(2)]
    (patch,) = retry.of(PatchStatus)
    assert patch.fields["state"] == "Retrying" and patch.fields["attempt"] == 2
    assert patch.fields["pod"] == "add-abc-2"
    taskrun = apply(taskrun, retry)
    assert taskrun.status.next_retry_at is None

    # Pod 1's late events change nothing now.
    assert decide(taskrun, pod(1, "Failed"), None, None, due).actions == ()

    taskrun = running(taskrun, 2)
    second = decide(taskrun, pod(2, "Failed"), failed(2), None, due)
    assert second.of(Requeue) == [Requeue(10.0)]
    taskrun = apply(taskrun, second)
    taskrun = apply(taskrun, decide(taskrun, None, None, None, due + timedelta(seconds=10)))
    assert taskrun.status.attempt == 3
    taskrun = running(taskrun, 3)
    last = decide(taskrun, pod(3, "Failed"), failed(3), None, due + timedelta(seconds=11))
    (patch,) = last.of(PatchStatus)
    assert patch.fields["state"] == "Failed"
    assert "Retries are exhausted" in patch.fields["message"]
    assert last.of(CreatePod) == [] and last.of(Requeue) == []
    taskrun = apply(taskrun, last)
    states = [(e.state.value, e.attempt) for e in taskrun.status.history]
    assert len(states) == len(set(states))


def test_jitter_uses_the_shared_delay_function() -> None:
    taskrun = running(start(make_taskrun(retries=1, retryDelaySeconds=[10],
                                          retryJitterFactor=0.5)))
    decision = decide(taskrun, pod(1, "Failed"), failed(), None, T0, random.Random(7))
    expected = delay_for_retry([10.0], 1, 0.5, random.Random(7))
    assert decision.of(Requeue) == [Requeue(expected)]
    low, high = jitter_bounds(10.0, 0.5)
    assert low <= expected <= high and expected != 10.0


def test_retry_condition_verdict_stops_retries() -> None:
    taskrun = running(start(make_taskrun(retries=3)))
    decision = decide(taskrun, pod(1, "Failed"), failed(allowed=False), None, T0)
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "Failed"
    assert "retry_condition_fn declined a retry" in patch.fields["message"]
    assert decision.of(Requeue) == [] and decision.of(CreatePod) == []


def test_failure_without_retries_is_final_with_the_exception() -> None:
    taskrun = running(start(make_taskrun()))
    decision = decide(taskrun, pod(1, "Failed"), failed(), None, T0)
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "Failed" and patch.fields["endTime"]
    assert "Task run encountered an exception" in patch.fields["message"]


def test_deadline_exceeded_is_timed_out() -> None:
    taskrun = running(start(make_taskrun(timeoutSeconds=1.5)))
    stopped = pod(1, "Failed", reason="DeadlineExceeded")
    stopped["spec"] = {"activeDeadlineSeconds": 32}
    decision = decide(taskrun, stopped, None, None, T0)
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "TimedOut" and patch.fields["stateType"] == "FAILED"
    assert "timeout_seconds=1.5" in patch.fields["message"]
    assert "ended by the kubelet at activeDeadlineSeconds=32" in patch.fields["message"]


def test_timed_out_attempt_is_retried() -> None:
    taskrun = running(start(make_taskrun(timeoutSeconds=1, retries=1)))
    decision = decide(taskrun, pod(1, "Failed", reason="DeadlineExceeded"), None, None, T0)
    patch = decision.of(PatchStatus)[0]
    assert [e["state"] for e in patch.history] == ["TimedOut", "AwaitingRetry"]


@pytest.mark.parametrize(
    ("observed", "words"),
    [
        (None, "disappeared"),
        (pod(1, "Failed", reason="Evicted"), "evicted"),
        (pod(1, "Failed", terminated="OOMKilled", exit_code=137), "OOMKilled"),
        (pod(1, "Failed", exit_code=139), "exit code 139"),
    ],
)
def test_crashes_are_crashed_and_retried(observed: dict[str, Any] | None, words: str) -> None:
    taskrun = running(start(make_taskrun(retries=1)))
    decision = decide(taskrun, observed, None, None, T0)
    (patch,) = decision.of(PatchStatus)
    assert [e["state"] for e in patch.history][-2:] == ["Crashed", "AwaitingRetry"]
    assert words in patch.fields["message"]
    no_retries = running(start(make_taskrun()))
    final = decide(no_retries, observed, None, None, T0).of(PatchStatus)[0]
    assert final.fields["state"] == "Crashed" and final.fields["stateType"] == "CRASHED"


def test_oomkilled_wins_over_the_pods_outcome() -> None:
    taskrun = running(start(make_taskrun()))
    observed = pod(1, "Failed", terminated="OOMKilled", exit_code=137)
    decision = decide(taskrun, observed, failed(allowed=False), None, T0)
    assert decision.of(PatchStatus)[0].fields["state"] == "Crashed"


def test_pod_deleted_after_writing_its_outcome_uses_the_outcome() -> None:
    taskrun = running(start(make_taskrun()))
    decision = decide(taskrun, None, completed(), None, T0)
    assert decision.of(PatchStatus)[0].fields["state"] == "Completed"


def test_pod_failure_reason() -> None:
    assert pod_failure_reason(pod(1, "Failed", reason="DeadlineExceeded")) == "DeadlineExceeded"
    assert pod_failure_reason(pod(1, "Failed", terminated="OOMKilled")) == "OOMKilled"
    assert pod_failure_reason(pod(1, "Failed", exit_code=1)) is None


def _waiting_pod(reason: str, message: str) -> dict[str, Any]:
    stuck = pod(1, "Pending", started=None)
    stuck["status"]["containerStatuses"] = [{"name": "task", "state": {"waiting": {
        "reason": reason, "message": message}}}]
    return stuck


def test_a_missing_secret_ends_the_attempt_at_once() -> None:
    # Waiting cannot create the Secret: no pending deadline, no retry, the pod is removed.
    taskrun = start(make_taskrun(retries=3))
    stuck = _waiting_pod("CreateContainerConfigError", 'secret "flowpod-s3" not found')
    decision = decide(taskrun, stuck, None, None, T0)
    assert decision.of(DeletePod) == [DeletePod(1)]
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "Crashed" and patch.fields["reason"] == "SecretNotFound"
    assert 'secret "flowpod-s3" not found' in patch.fields["message"]
    assert decision.of(Event)[0].reason == "SecretNotFound"
    assert decision.of(Requeue) == []
    ended = apply(taskrun, decision)
    assert ended.status.state == "Crashed" and ended.status.history[-1].reason == "SecretNotFound"
    assert decide(ended, stuck, None, None, T0).actions == ()


def test_a_pod_that_cannot_start_is_reported_once_then_ended_at_the_deadline() -> None:
    taskrun = start(make_taskrun(retries=1))
    stuck = _waiting_pod("ErrImagePull", "pull access denied for flowpod:nope")
    decision = decide(taskrun, stuck, None, None, T0, pending_timeout=60)
    (patch,) = decision.of(PatchStatus)
    assert patch.history == () and "state" not in patch.fields
    assert patch.fields["reason"] == "ErrImagePull"
    assert "pull access denied" in patch.fields["message"]
    assert [e.reason for e in decision.of(Event)] == ["ErrImagePull"]
    assert decision.of(Requeue) == [Requeue(60.0)]
    taskrun = apply(taskrun, decision)
    assert taskrun.status.state == "Pending" and taskrun.status.reason == "ErrImagePull"
    # The same observation again: nothing new to say, only the wake-up at the deadline.
    later = T0 + timedelta(seconds=20)
    assert decide(taskrun, stuck, None, None, later, pending_timeout=60).actions == (
        Requeue(40.0),
    )
    # The deadline: Crashed (an infrastructure failure), the pod removed, a retry scheduled.
    late = T0 + timedelta(seconds=60)
    decision = decide(taskrun, stuck, None, None, late, pending_timeout=60)
    assert decision.of(DeletePod) == [DeletePod(1)]
    ended = apply(taskrun, decision)
    assert ended.status.state == "AwaitingRetry" and ended.status.reason == "PendingTimeout"
    crashed = [h for h in ended.status.history if h.state == "Crashed"]
    assert crashed and "could not start within 60 s" in (crashed[0].message or "")
    assert "ErrImagePull" in (crashed[0].message or "")


def test_spec_pending_timeout_wins_over_the_operators_default() -> None:
    taskrun = start(make_taskrun(pendingTimeoutSeconds=5))
    stuck = pod(1, "Pending", started=None)
    decision = decide(taskrun, stuck, None, None, T0 + timedelta(seconds=6), pending_timeout=600)
    assert apply(taskrun, decision).status.reason == "PendingTimeout"


def test_a_refused_pod_create_is_reported_and_tried_again() -> None:
    taskrun = start(make_taskrun())
    refused = create_refusal(403, '{"kind":"Status","message":"pods \\"add-abc-1\\" is '
                             'forbidden: exceeded quota: compute"}', "add-abc-1")
    assert refused.reason == "QuotaExceeded" and not refused.permanent
    decision = decide(taskrun, None, None, None, T0, trouble=refused, pending_timeout=300)
    assert decision.of(CreatePod) == [CreatePod(1)]
    assert apply(taskrun, decision).status.reason == "QuotaExceeded"
    assert decision.of(Requeue)[0].after_s <= 5.0


def test_a_missing_service_account_ends_the_attempt_at_once() -> None:
    taskrun = start(make_taskrun(retries=2))
    refused = create_refusal(
        403, '{"message":"pods \\"add-abc-1\\" is forbidden: error looking up service '
        'account ns/runner: serviceaccount \\"runner\\" not found"}', "add-abc-1")
    assert refused.reason == "ServiceAccountNotFound" and refused.permanent
    decision = decide(taskrun, None, None, None, T0, trouble=refused)
    assert decision.of(CreatePod) == []
    ended = apply(taskrun, decision)
    assert ended.status.state == "Crashed" and ended.status.reason == "ServiceAccountNotFound"
    assert 'serviceaccount "runner" not found' in (ended.status.message or "")


def test_unschedulable_is_reported() -> None:
    taskrun = start(make_taskrun())
    stuck = pod(1, "Pending", started=None)
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                      "reason": "Unschedulable",
                                      "message": "0/1 nodes are available: 1 Insufficient cpu."}]
    decision = decide(taskrun, stuck, None, None, T0, pending_timeout=300)
    assert apply(taskrun, decision).status.reason == "Unschedulable"
    assert "Insufficient cpu" in (apply(taskrun, decision).status.message or "")


def test_oomkilled_is_crashed_with_its_limit_and_the_next_attempt_gets_more_memory() -> None:
    taskrun = running(start(make_taskrun(retries=2, oomMemoryRaise={"factor": 2, "max": "1Gi"})))
    killed = pod(1, "Failed", terminated="OOMKilled", exit_code=137)
    killed["spec"] = {"containers": [{"name": "task",
                                      "resources": {"limits": {"memory": "256Mi"}}}]}
    decision = decide(taskrun, killed, None, None, T0)
    waiting = apply(taskrun, decision)
    crashed = [h for h in waiting.status.history if h.state == "Crashed"][0]
    assert crashed.reason == "OOMKilled" and "OOMKilled at limit 256Mi" in (crashed.message or "")
    assert waiting.status.state == "AwaitingRetry" and waiting.status.memory_limit == "512Mi"
    assert "memory limit raised to 512Mi" in (waiting.status.message or "")


def test_no_raise_beyond_the_cap() -> None:
    taskrun = running(start(make_taskrun(retries=2, oomMemoryRaise={"factor": 4, "max": "1Gi"})),
                      )
    killed = pod(1, "Failed", terminated="OOMKilled", exit_code=137)
    killed["spec"] = {"containers": [{"name": "task",
                                      "resources": {"limits": {"memory": "512Mi"}}}]}
    assert apply(taskrun, decide(taskrun, killed, None, None, T0)).status.memory_limit == "1Gi"


# -- cache ----------------------------------------------------------------------------------------


def record(key: str = "ck", expires: datetime | None = None) -> CacheRecord:
    return CacheRecord(cache_key=key, task_key="k", result_key=f"cache/{key}.value",
                       serializer="pickle", created=T0 - timedelta(hours=1), expires=expires)


def test_cache_hit_completes_cached_without_a_pod() -> None:
    taskrun = make_taskrun(cacheKey="ck")
    decision = decide(taskrun, None, None, record(), T0)
    assert decision.of(CreatePod) == []
    (patch,) = decision.of(PatchStatus)
    assert patch.fields["state"] == "Cached" and patch.fields["stateType"] == "COMPLETED"
    assert patch.fields["resultRef"] == "cache/ck.value"
    assert apply(taskrun, decision).status.state == "Cached"
    assert decide(apply(taskrun, decision), None, None, record(), T0).actions == ()


@pytest.mark.parametrize(
    ("spec", "hit"),
    [
        ({"cacheKey": "ck"}, record(expires=T0)),  # expired exactly now
        ({"cacheKey": "ck", "refreshCache": True}, record()),
        ({"cacheKey": "ck"}, record(key="other")),
        ({"cacheKey": "ck"}, None),
        ({}, record()),
    ],
)
def test_cache_miss_runs_a_pod(spec: dict[str, Any], hit: CacheRecord | None) -> None:
    decision = decide(make_taskrun(**spec), None, None, hit, T0)
    assert decision.of(CreatePod) == [CreatePod(1)]


def test_unexpired_record_is_a_hit() -> None:
    decision = decide(make_taskrun(cacheKey="ck"), None, None,
                      record(expires=T0 + timedelta(seconds=1)), T0)
    assert decision.of(CreatePod) == []


# -- final states and helpers ---------------------------------------------------------------------


@pytest.mark.parametrize("state", ["Completed", "Cached", "Failed", "TimedOut", "Crashed"])
def test_final_states_decide_nothing(state: str) -> None:
    taskrun = make_taskrun(status={"state": state, "attempt": 1})
    for observed in (None, pod(1, "Failed"), pod(1, "Succeeded")):
        assert decide(taskrun, observed, failed(), record(), T0).actions == ()


def test_history_is_appended_not_replaced() -> None:
    patch = PatchStatus({"state": "Running"}, ({"state": "Running"},))
    assert patch.status_patch([{"state": "Pending"}])["history"] == [
        {"state": "Pending"}, {"state": "Running"}
    ]
    assert "history" not in PatchStatus({"state": "Running"}).status_patch([{"state": "X"}])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0.0s"), (0.44, "0.4s"), (12.9, "12s"), (63, "1m3s"), (7500, "2h5m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_platform_failures_get_the_operators_own_retries_beyond_the_runs() -> None:
    # A pod that ended without an outcome (its store was down) says nothing about the task: with
    # no retries of its own, the run still gets infrastructure retries, then ends Crashed.
    taskrun = running(start(make_taskrun(retries=0)))
    now = T0
    for attempt in (1, 2, 3):
        decision = decide(taskrun, pod(attempt, "Failed", exit_code=75), None, None, now,
                          infrastructure_retries=2 if attempt else 0)
        taskrun = apply(taskrun, decision)
        if attempt == 3:
            break
        assert taskrun.status.state == "AwaitingRetry", taskrun.status
        assert "platform failure" in (taskrun.status.message or "")
        assert taskrun.status.reason == "NoOutcome"
        now = taskrun.status.next_retry_at or now
        taskrun = apply(taskrun, decide(taskrun, None, None, None, now))
        assert taskrun.status.attempt == attempt + 1
        taskrun = running(taskrun, attempt + 1)
    assert taskrun.status.state == "Crashed" and taskrun.status.reason == "NoOutcome"
    assert taskrun.status.attempt == 3


def test_user_failures_get_no_infrastructure_retries() -> None:
    taskrun = running(start(make_taskrun(retries=0)))
    failed = Outcome(attempt=1, state="Failed", exception="ValueError('x')")
    decision = decide(taskrun, pod(1, "Failed", exit_code=1), failed, None, T0,
                      infrastructure_retries=3)
    ended = apply(taskrun, decision)
    assert ended.status.state == "Failed" and ended.status.reason == "TaskFailed"


# -- fewer writes (issue 15) --------------------------------------------------------------------


def _running_pod(since: datetime) -> dict[str, Any]:
    running_pod = pod(1, "Running", started=since - timedelta(seconds=1))
    running_pod["status"]["containerStatuses"] = [
        {"name": "task", "state": {"running": {"startedAt": since.isoformat()}}}]
    return running_pod


def test_running_waits_for_the_report_delay_then_is_written_with_the_pods_start() -> None:
    taskrun = start(make_taskrun())
    seen = _running_pod(T0)
    early = decide(taskrun, seen, None, None, T0 + timedelta(seconds=0.5), running_delay=2)
    assert early.actions == (Requeue(1.5),)  # no patch yet: the timer looks again
    later = apply(taskrun, decide(taskrun, seen, None, None, T0 + timedelta(seconds=2),
                                  running_delay=2))
    assert later.status.state == "Running"
    assert later.status.history[-1].timestamp == T0 - timedelta(seconds=1)  # the pod's start


def test_a_task_ending_within_the_delay_records_running_and_completed_in_one_patch() -> None:
    taskrun = start(make_taskrun())
    now = T0 + timedelta(seconds=1)
    assert decide(taskrun, _running_pod(T0), None, None, now, running_delay=2).of(PatchStatus) \
        == []
    ended = pod(1, "Succeeded", started=T0 - timedelta(seconds=1))
    decision = decide(taskrun, ended, completed(), None, now + timedelta(seconds=0.5),
                      running_delay=2)
    assert len(decision.of(PatchStatus)) == 1
    done = apply(taskrun, decision)
    assert [(e.state, e.timestamp) for e in done.status.history] == [
        ("Pending", T0), ("Running", T0 - timedelta(seconds=1)),
        ("Completed", now + timedelta(seconds=0.5))]


def test_a_clock_ahead_of_ours_delays_running_by_the_delay_at_most() -> None:
    taskrun = start(make_taskrun())
    ahead = _running_pod(T0 + timedelta(minutes=5))
    assert decide(taskrun, ahead, None, None, T0, running_delay=2).actions == (Requeue(2.0),)


def _unschedulable(since: datetime) -> dict[str, Any]:
    stuck = pod(1, "Pending", started=None)
    stuck["status"]["conditions"] = [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient cpu.",
        "lastTransitionTime": since.isoformat()}]
    return stuck


def test_unschedulable_is_reported_only_after_the_grace_period() -> None:
    from flowpod_operator.decisions import UNSCHEDULABLE_GRACE_S

    taskrun = start(make_taskrun())
    stuck = _unschedulable(T0)
    soon = decide(taskrun, stuck, None, None, T0 + timedelta(seconds=4), pending_timeout=300)
    assert soon.actions == (Requeue(UNSCHEDULABLE_GRACE_S - 4),)
    late = decide(taskrun, stuck, None, None, T0 + timedelta(seconds=UNSCHEDULABLE_GRACE_S),
                  pending_timeout=300)
    assert apply(taskrun, late).status.reason == "Unschedulable"
    assert late.of(Event) and late.of(Requeue)


def test_an_attempt_gets_its_pending_deadline_when_its_pod_is_created() -> None:
    # Pod events that change nothing are not reconciled, so the deadline cannot wait for one.
    decision = decide(make_taskrun(), None, None, None, T0, pending_timeout=300)
    assert decision.of(CreatePod) == [CreatePod(1)] and decision.of(Requeue) == [Requeue(300.0)]
    waiting = make_taskrun({"state": "AwaitingRetry", "attempt": 1,
                            "nextRetryAt": T0.isoformat()}, retries=1)
    retry = decide(waiting, None, None, None, T0, pending_timeout=60)
    assert retry.of(CreatePod) == [CreatePod(2)] and retry.of(Requeue) == [Requeue(60.0)]
