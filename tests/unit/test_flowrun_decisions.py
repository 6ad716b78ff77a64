"""The operator's pure FlowRun decisions: start, running, outcomes, retries, timeout, cancel, TTL,
task counts, and idempotency (the same observation twice gives the actions once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from flowpod._contract.records import FlowOutcome
from flowpod._contract.resources import FlowRunResource
from flowpod_operator.decisions import CreatePod, PatchStatus, Requeue
from flowpod_operator.decisions_flowrun import (
    CancelRun,
    DeleteFlowRun,
    FlowDecision,
    count_task_runs,
    decide_flowrun,
    retry_delay,
)
from flowpod_operator.pods import flow_pod_manifest, flow_pod_name
from flowpod_operator.settings import OperatorConfig

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def make_flowrun(status: dict[str, Any] | None = None, **spec: Any) -> FlowRunResource:
    body: dict[str, Any] = {
        "apiVersion": "flowpod.dev/v1alpha1",
        "kind": "FlowRun",
        "metadata": {"name": "etl", "namespace": "ns", "uid": "u-1",
                     "creationTimestamp": T0.isoformat()},
        "spec": {"entrypoint": "pkg.flows:etl", **spec},
    }
    if status is not None:
        body["status"] = status
    return FlowRunResource.from_object(body)


def apply(flowrun: FlowRunResource, decision: FlowDecision) -> FlowRunResource:
    """The FlowRun after the decision's status patches (merge patch rules)."""
    body = flowrun.model_dump(mode="json", by_alias=True, exclude_none=True)
    status = dict(body.get("status") or {})
    for patch in decision.of(PatchStatus):
        for key, value in patch.status_patch(status.get("history") or []).items():
            if value is None:
                status.pop(key, None)
            else:
                status[key] = value
    body["status"] = status
    return FlowRunResource.from_object(body)


def pod(phase: str, reason: str | None = None, attempt: int = 1) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if reason:
        status["reason"] = reason
    return {"metadata": {"name": flow_pod_name("etl", attempt)}, "status": status}


def history(flowrun: FlowRunResource) -> list[str]:
    return [entry.state.value for entry in flowrun.status.history]


def start(**spec: Any) -> FlowRunResource:
    flowrun = make_flowrun(**spec)
    decision = decide_flowrun(flowrun, None, None, None, T0)
    assert decision.of(CreatePod) == [CreatePod(1)]
    return apply(flowrun, decision)


def test_new_flowrun_creates_flow_pod_one_and_is_pending() -> None:
    flowrun = start()
    assert flowrun.status.state == "Pending"
    assert flowrun.status.attempt == 1
    assert flowrun.status.pod == "etl-flow-1"
    assert flowrun.status.start_time == T0


def test_running_pod_moves_to_running_once() -> None:
    flowrun = start()
    decision = decide_flowrun(flowrun, pod("Running"), None, None, T0)
    flowrun = apply(flowrun, decision)
    assert flowrun.status.state == "Running"
    assert decide_flowrun(flowrun, pod("Running"), None, None, T0).actions == ()


def test_completed_outcome_sets_result_end_and_duration() -> None:
    flowrun = apply(start(), decide_flowrun(start(), pod("Running"), None, None, T0))
    outcome = FlowOutcome(attempt=1, state="Completed", result_ref="runs/ns/etl/flow-result-1")
    later = T0 + timedelta(seconds=75)
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Succeeded"), outcome, None, later))
    assert flowrun.status.state == "Completed"
    assert flowrun.status.result_ref == "runs/ns/etl/flow-result-1"
    assert flowrun.status.end_time == later
    assert flowrun.status.duration == "1m15s"
    assert history(flowrun) == ["Pending", "Running", "Completed"]
    # Final, no TTL: nothing more to do, however often it is looked at.
    assert decide_flowrun(flowrun, pod("Succeeded"), outcome, None, later).actions == ()


def test_failed_outcome_keeps_the_flow_message() -> None:
    flowrun = start()
    outcome = FlowOutcome(attempt=1, state="Failed", message="invalid parameters for 'n'")
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Failed"), outcome, None, T0))
    assert flowrun.status.state == "Failed"
    assert flowrun.status.message == "invalid parameters for 'n'"
    assert flowrun.status.result_ref is None


def test_pod_gone_without_outcome_is_crashed() -> None:
    flowrun = apply(start(), decide_flowrun(start(), None, None, None, T0))
    assert flowrun.status.state == "Crashed"
    assert "without writing an outcome" in (flowrun.status.message or "")


def test_deadline_exceeded_is_timed_out_even_with_an_outcome() -> None:
    flowrun = start(timeoutSeconds=30)
    decision = decide_flowrun(flowrun, pod("Failed", "DeadlineExceeded"), None, None, T0)
    flowrun = apply(flowrun, decision)
    assert flowrun.status.state == "TimedOut"
    assert "timeout_seconds=30" in (flowrun.status.message or "")


def test_failure_with_retries_waits_then_starts_the_next_flow_pod() -> None:
    flowrun = start(retries=2, retryDelaySeconds=[5, 20])
    failed = FlowOutcome(attempt=1, state="Failed", message="boom")
    decision = decide_flowrun(flowrun, pod("Failed"), failed, None, T0)
    assert decision.of(Requeue) == [Requeue(5.0)]
    flowrun = apply(flowrun, decision)
    assert flowrun.status.state == "AwaitingRetry"
    assert flowrun.status.next_retry_at == T0 + timedelta(seconds=5)
    # Too early: only a requeue for the rest of the delay.
    early = decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=2))
    assert early.actions == (Requeue(3.0),)
    due = T0 + timedelta(seconds=5)
    decision = decide_flowrun(flowrun, None, None, None, due)
    assert decision.of(CreatePod) == [CreatePod(2)]
    flowrun = apply(flowrun, decision)
    assert flowrun.status.state == "Retrying"
    assert flowrun.status.attempt == 2 and flowrun.status.pod == "etl-flow-2"
    assert flowrun.status.next_retry_at is None
    assert history(flowrun) == ["Pending", "Failed", "AwaitingRetry", "Retrying"]
    assert retry_delay(flowrun, 2) == 20.0 and retry_delay(flowrun, 7) == 20.0


def test_retries_exhausted_ends_failed() -> None:
    flowrun = make_flowrun({"state": "Running", "stateType": "RUNNING", "attempt": 2},
                           retries=1)
    failed = FlowOutcome(attempt=2, state="Failed", message="still broken")
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Failed", attempt=2), failed, None, T0))
    assert flowrun.status.state == "Failed"


def test_crash_is_not_retried() -> None:
    flowrun = start(retries=3)
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Failed"), None, None, T0))
    assert flowrun.status.state == "Crashed"


def test_cancel_deletes_pods_and_ends_cancelled() -> None:
    flowrun = start()
    flowrun = make_flowrun(flowrun.status.to_wire(), cancel=True)
    decision = decide_flowrun(flowrun, pod("Running"), None, None, T0)
    assert decision.of(CancelRun) == [CancelRun(1)]
    flowrun = apply(flowrun, decision)
    assert flowrun.status.state == "Cancelled"
    assert decide_flowrun(flowrun, None, None, None, T0).actions == ()


def test_cancel_before_start_creates_no_pod() -> None:
    decision = decide_flowrun(make_flowrun(cancel=True), None, None, None, T0)
    assert decision.of(CreatePod) == []
    assert apply(make_flowrun(cancel=True), decision).status.state == "Cancelled"


def test_ttl_requeues_until_due_then_deletes() -> None:
    flowrun = start(ttlSecondsAfterFinished=60)
    done = FlowOutcome(attempt=1, state="Completed", result_ref="r")
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Succeeded"), done, None, T0))
    assert decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=20)).actions == (
        Requeue(40.0),)
    late = decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=60))
    assert late.actions == (DeleteFlowRun(),)


def test_default_ttl_applies_only_without_a_spec_value() -> None:
    flowrun = start()
    flowrun = apply(flowrun, decide_flowrun(flowrun, None, FlowOutcome(1, "Completed"), None, T0))
    assert decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=10),
                          default_ttl=5).actions == (DeleteFlowRun(),)
    assert decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=10)).actions == ()


def test_counts_and_summary() -> None:
    counts = count_task_runs(["Completed", "Cached", "Running", "Retrying", None, "Failed",
                              "AwaitingRetry"])
    assert counts["tasksSummary"] == "3/7"
    runs = counts["taskRuns"]
    assert runs["total"] == 7 and runs["running"] == 2 and runs["pending"] == 1
    assert runs["awaitingRetry"] == 1 and runs["failed"] == 1 and runs["cached"] == 1


def test_counts_are_patched_only_when_they_change() -> None:
    flowrun = apply(start(), decide_flowrun(start(), pod("Running"), None, None, T0))
    counts = count_task_runs(["Running", "Completed"])
    decision = decide_flowrun(flowrun, pod("Running"), None, counts, T0)
    flowrun = apply(flowrun, decision)
    assert flowrun.status.tasks_summary == "1/2"
    assert flowrun.status.task_runs is not None and flowrun.status.task_runs.running == 1
    assert decide_flowrun(flowrun, pod("Running"), None, counts, T0).actions == ()
    # Counts keep arriving after the flow finished (batched): still patched.
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Succeeded"),
                                            FlowOutcome(1, "Completed"), counts, T0))
    final_counts = count_task_runs(["Completed", "Completed"])
    decision = decide_flowrun(flowrun, None, None, final_counts, T0)
    assert apply(flowrun, decision).status.tasks_summary == "2/2"


def test_flow_pod_manifest() -> None:
    flowrun = make_flowrun(timeoutSeconds=2.5, image="my/image:1",
                           env=[{"name": "FLOWPOD_EXAMPLE_API", "value": "http://x"}])
    manifest = flow_pod_manifest(flowrun, 2, OperatorConfig())
    meta, spec = manifest["metadata"], manifest["spec"]
    assert meta["name"] == "etl-flow-2"
    assert meta["labels"]["flowpod.dev/flowrun"] == "etl"
    assert meta["labels"]["flowpod.dev/role"] == "flow"
    assert meta["labels"]["flowpod.dev/attempt"] == "2"
    assert meta["ownerReferences"][0]["kind"] == "FlowRun"
    # The pod stops the flow at its timeout; the kubelet's deadline is the backstop after it.
    assert spec["activeDeadlineSeconds"] == 3 + OperatorConfig().deadline_allowance_seconds
    assert spec["serviceAccountName"] == "flowpod-flow-runner"
    container = spec["containers"][0]
    assert container["command"][-4:] == ["flow", "ns/etl", "--attempt", "2"]
    assert container["image"] == "my/image:1"
    assert {"name": "FLOWPOD_EXAMPLE_API", "value": "http://x"} in container["env"]
    named = make_flowrun(serviceAccountName="custom-sa")
    assert flow_pod_manifest(named, 1, OperatorConfig())["spec"]["serviceAccountName"] == (
        "custom-sa")


def test_flow_pod_name_is_bounded() -> None:
    name = flow_pod_name("x" * 80, 3)
    assert len(name) <= 63 and name.endswith("-3")
    assert flow_pod_name("x" * 80, 3) != flow_pod_name("x" * 79, 3)


# -- runs that cannot start (issue 12) ----------------------------------------------------------


def _started() -> FlowRunResource:
    flowrun = make_flowrun()
    return apply(flowrun, decide_flowrun(flowrun, None, None, None, T0))


def test_a_missing_flow_runner_service_account_ends_the_flow_run_with_the_reason() -> None:
    from flowpod_operator.problems import create_refusal

    flowrun = _started()
    refused = create_refusal(
        403, '{"message": "pods \\"etl-flow-1\\" is forbidden: error looking up service account '
        'ns/flowpod-flow-runner: serviceaccount \\"flowpod-flow-runner\\" not found"}',
        "etl-flow-1")
    decision = decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=1),
                              trouble=refused, pending_timeout=300)
    ended = apply(flowrun, decision)
    assert ended.status.state == "Crashed" and ended.status.reason == "ServiceAccountNotFound"
    assert 'serviceaccount "flowpod-flow-runner" not found' in (ended.status.message or "")
    assert decision.of(CreatePod) == []


def test_a_refused_flow_pod_waits_with_its_reason_then_ends_at_the_deadline() -> None:
    from flowpod_operator.decisions import Event
    from flowpod_operator.problems import create_refusal

    flowrun = _started()
    refused = create_refusal(403, '{"message": "exceeded quota: pods"}', "etl-flow-1")
    decision = decide_flowrun(flowrun, None, None, None, T0 + timedelta(seconds=1),
                              trouble=refused, pending_timeout=60)
    assert decision.of(CreatePod) == [CreatePod(1)]
    assert [e.reason for e in decision.of(Event)] == ["QuotaExceeded"]
    waiting = apply(flowrun, decision)
    assert waiting.status.state == "Pending" and waiting.status.reason == "QuotaExceeded"
    again = decide_flowrun(waiting, None, None, None, T0 + timedelta(seconds=2),
                           trouble=refused, pending_timeout=60)
    assert again.of(Event) == []  # once per change of reason
    late = decide_flowrun(waiting, None, None, None, T0 + timedelta(seconds=61),
                          trouble=refused, pending_timeout=60)
    ended = apply(waiting, late)
    assert ended.status.state == "Crashed" and ended.status.reason == "PendingTimeout"
    assert "could not start within 60 s" in (ended.status.message or "")


def test_an_unschedulable_flow_pod_is_reported_and_removed_at_the_deadline() -> None:
    flowrun = _started()
    stuck = pod("Pending")
    stuck["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                      "reason": "Unschedulable", "message": "0/1 nodes"}]
    decision = decide_flowrun(flowrun, stuck, None, None, T0, pending_timeout=30)
    assert apply(flowrun, decision).status.reason == "Unschedulable"
    assert decision.of(Requeue) == [Requeue(30.0)]
    late = decide_flowrun(apply(flowrun, decision), stuck, None, None,
                          T0 + timedelta(seconds=30), pending_timeout=30)
    assert late.of(CancelRun) == [CancelRun(1)]
    assert apply(flowrun, late).status.reason == "PendingTimeout"


def test_an_oomkilled_flow_pod_names_its_limit() -> None:
    flowrun = apply(_started(), decide_flowrun(_started(), pod("Running"), None, None, T0))
    killed = pod("Failed")
    killed["status"]["containerStatuses"] = [{"state": {"terminated": {
        "reason": "OOMKilled", "exitCode": 137}}}]
    killed["spec"] = {"containers": [{"resources": {"limits": {"memory": "128Mi"}}}]}
    ended = apply(flowrun, decide_flowrun(flowrun, killed, None, None, T0))
    assert ended.status.state == "Crashed" and ended.status.reason == "OOMKilled"
    assert "OOMKilled at limit 128Mi" in (ended.status.message or "")


# -- a lost flow pod: the operator's platform retries, resuming the run ---------------------------


def test_a_deleted_flow_pod_is_resumed_by_the_next_one_up_to_the_operator_budget() -> None:
    from flowpod._contract.resuming import resumed_from

    flowrun = start(retries=0)
    now = T0
    for number, delay in ((1, 2.0), (2, 10.0), (3, 30.0)):
        decision = decide_flowrun(flowrun, None, None, None, now, infrastructure_retries=3)
        assert decision.of(Requeue) == [Requeue(delay)]
        flowrun = apply(flowrun, decision)
        assert flowrun.status.state == "AwaitingRetry"
        assert flowrun.status.reason == "PodDeleted"
        message = flowrun.status.message or ""
        assert f"platform failure ({number}/3)" in message and "resumes the run" in message
        now += timedelta(seconds=delay)
        decision = decide_flowrun(flowrun, None, None, None, now, infrastructure_retries=3)
        assert decision.of(CreatePod) == [CreatePod(number + 1)]
        flowrun = apply(flowrun, decision)
        # Every later attempt continues the work of the first: its TaskRuns are adopted.
        assert resumed_from(flowrun.status.history, flowrun.status.attempt) == 1
    flowrun = apply(flowrun, decide_flowrun(flowrun, None, None, None, now,
                                            infrastructure_retries=3))
    assert flowrun.status.state == "Crashed" and flowrun.status.reason == "PodDeleted"
    assert history(flowrun).count("Crashed") == 4


def test_an_evicted_flow_pod_is_retried_but_a_crash_of_the_flow_code_is_not() -> None:
    evicted = {"metadata": {"name": flow_pod_name("etl", 1)},
               "status": {"phase": "Failed", "reason": "Evicted",
                          "message": "The node was low on resource: memory."}}
    flowrun = apply(start(), decide_flowrun(start(), evicted, None, None, T0,
                                            infrastructure_retries=3))
    assert (flowrun.status.state, flowrun.status.reason) == ("AwaitingRetry", "Evicted")
    crashed = FlowOutcome(attempt=1, state="Crashed", message="Flow run crashed: SystemExit")
    flowrun = apply(start(), decide_flowrun(start(), pod("Failed"), crashed, None, T0,
                                            infrastructure_retries=3))
    assert flowrun.status.state == "Crashed" and flowrun.status.reason is None


def test_a_retry_after_the_flow_failed_starts_a_new_series() -> None:
    from flowpod._contract.resuming import resumed_from

    flowrun = start(retries=1)
    failed = FlowOutcome(attempt=1, state="Failed", message="boom")
    flowrun = apply(flowrun, decide_flowrun(flowrun, pod("Failed"), failed, None, T0,
                                            infrastructure_retries=3))
    flowrun = apply(flowrun, decide_flowrun(flowrun, None, None, None, T0,
                                            infrastructure_retries=3))
    assert flowrun.status.attempt == 2
    assert resumed_from(flowrun.status.history, 2) == 2
