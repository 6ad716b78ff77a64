"""What the operator does next for one FlowRun: observed state in, actions out.

Pure, like ``decisions``: ``decide_flowrun`` reads the FlowRun (spec and the status written
earlier), the current attempt's flow pod as last observed (None: known not to exist), that
attempt's flow outcome record, the counts of the FlowRun's TaskRuns by state, the time and the
default TTL, and returns the actions. The same observation fed twice yields the actions once.

State machine (status.state), one flow pod per attempt:

    (none) --> Pending [flow pod 1] --pod running--> Running --outcome Completed--> Completed
    Pending|Running|Retrying --pod ended / gone--> Failed | TimedOut | Crashed
        --Failed/TimedOut and spec.retries left--> AwaitingRetry(nextRetryAt)
        --Crashed for the platform (pod deleted, evicted, node lost), operator budget left-->
            AwaitingRetry, the next flow pod resuming: it adopts the crashed one's TaskRuns
        --nextRetryAt reached--> Retrying [flow pod n+1] --> Running --> ...
    any non-final state --spec.cancel--> Cancelled [flow pod and task pods deleted]
    final --ttlSecondsAfterFinished after endTime--> FlowRun deleted (owners take the rest)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flowpod._contract.reasons import Reason
from flowpod._contract.records import FlowOutcome
from flowpod._contract.resources import FlowRunResource
from flowpod._contract.states import FINAL_STATES, StateName
from flowpod._contract.status import HistoryEntry, final_fields, history_entry, iso, state_fields
from flowpod_operator.decisions import (
    CreatePod,
    Event,
    PatchStatus,
    Requeue,
    pod_failure_reason,
)
from flowpod_operator.pods import flow_pod_name
from flowpod_operator.problems import (
    Trouble,
    attempt_started,
    ended_pod,
    pending_pod_trouble,
    platform_retry,
    platform_suffix,
)

# How soon a refused flow pod create is tried again.
_CREATE_RETRY_S = 5.0

__all__ = [
    "CancelRun",
    "DeleteFlowRun",
    "FlowAction",
    "FlowDecision",
    "count_task_runs",
    "decide_flowrun",
    "retry_delay",
]

_ACTIVE = frozenset({StateName.PENDING, StateName.RUNNING, StateName.RETRYING})
_RETRYABLE = frozenset({StateName.FAILED, StateName.TIMED_OUT})
_OUTCOME_STATES = {
    "Completed": StateName.COMPLETED, "Failed": StateName.FAILED,
    "TimedOut": StateName.TIMED_OUT, "Crashed": StateName.CRASHED,
}
# TaskRun state -> key in status.taskRuns (Retrying runs are running; no state yet is pending).
_COUNT_KEYS = {
    None: "pending", "Pending": "pending", "Running": "running", "Retrying": "running",
    "AwaitingRetry": "awaitingRetry", "Completed": "completed", "Cached": "cached",
    "Failed": "failed", "TimedOut": "timedOut", "Crashed": "crashed", "Cancelled": "cancelled",
}
_DONE_KEYS = ("completed", "cached", "failed", "timedOut", "crashed", "cancelled")


@dataclass(frozen=True)
class CancelRun:
    """Delete the flow pod of ``attempt`` (if any), cancel the non-final TaskRuns of the
    FlowRun and delete their pods."""

    attempt: int


@dataclass(frozen=True)
class DeleteFlowRun:
    """Delete the FlowRun (its TTL passed); ownerReferences take its TaskRuns and pods."""


FlowAction = CreatePod | PatchStatus | Event | Requeue | CancelRun | DeleteFlowRun


@dataclass(frozen=True)
class FlowDecision:
    actions: tuple[FlowAction, ...] = ()

    def of(self, kind: type[Any]) -> list[Any]:
        """The actions of one kind, in order."""
        return [action for action in self.actions if isinstance(action, kind)]


Decision = FlowDecision


def count_task_runs(states: Iterable[str | None]) -> dict[str, Any]:
    """``status.taskRuns`` (wire form) plus ``tasksSummary`` from the TaskRuns' states."""
    counts = dict.fromkeys(("total", *sorted(set(_COUNT_KEYS.values()))), 0)
    for state in states:
        counts["total"] += 1
        counts[_COUNT_KEYS.get(state, "pending")] += 1
    done = sum(counts[key] for key in _DONE_KEYS)
    return {"taskRuns": counts, "tasksSummary": f"{done}/{counts['total']}"}


def retry_delay(flowrun: FlowRunResource, attempt: int) -> float:
    """Delay before the attempt after ``attempt``: spec.retryDelaySeconds[attempt-1], the last
    entry repeating; no delay when the list is empty."""
    delays = flowrun.spec.retry_delay_seconds
    if not delays:
        return 0.0
    return float(delays[min(attempt - 1, len(delays) - 1)])


def _counts_patch(flowrun: FlowRunResource, counts: Mapping[str, Any] | None) -> dict[str, Any]:
    if counts is None:
        return {}
    current = flowrun.status.task_runs.to_wire() if flowrun.status.task_runs else None
    wanted = dict(counts["taskRuns"])
    if current == wanted and flowrun.status.tasks_summary == counts["tasksSummary"]:
        return {}
    return dict(counts)


def _final(flowrun: FlowRunResource, state: StateName, message: str | None, now: datetime,
           counts: Mapping[str, Any] | None, reason: str | None = None,
           **extra: Any) -> PatchStatus:
    start = flowrun.status.start_time or flowrun.metadata.creation_timestamp or now
    fields = {
        **state_fields(state, message, reason),
        **dict(counts or {}),
        **final_fields(start, now),
        **extra,
    }
    entry = history_entry(state, now, flowrun.status.attempt, message, reason)
    return PatchStatus(fields, (entry,))


def decide_flowrun(
    flowrun: FlowRunResource,
    pod: Mapping[str, Any] | None,
    outcome: FlowOutcome | None,
    counts: Mapping[str, Any] | None,
    now: datetime,
    default_ttl: int | None = None,
    *,
    trouble: Trouble | None = None,
    pending_timeout: float | None = None,
    infrastructure_retries: int = 0,
) -> Decision:
    """The actions that bring ``flowrun``'s status in line with what was observed.

    ``trouble``: why the last create of the flow pod was refused; ``pending_timeout``: the
    operator's default for how long a flow attempt may take to start; ``infrastructure_retries``:
    how many more flow pods a FlowRun gets after platform crashes (its pod deleted, evicted,
    lost). Such an attempt is resumed, not rerun: the next flow pod adopts the TaskRuns the
    crashed one created (``flowpod._contract.resuming``).

    ``counts`` is ``count_task_runs`` of the FlowRun's TaskRuns (None: not known, left as is).
    """
    status, spec = flowrun.status, flowrun.spec
    state = status.state
    name = flowrun.metadata.name or "?"
    if state is None:
        if spec.cancel:
            return Decision((_final(flowrun, StateName.CANCELLED,
                                    "Cancelled before it started", now, counts,
                                    startTime=iso(now)),))
        pod_name = flow_pod_name(name, 1)
        fields = {**state_fields(StateName.PENDING, None), "attempt": 1, "pod": pod_name,
                  "startTime": iso(now), **dict(counts or {})}
        return Decision((CreatePod(1), PatchStatus(fields, (history_entry(StateName.PENDING, now, 1,
                                                                     None),))))
    if state in FINAL_STATES:
        return _finished(flowrun, counts, now, default_ttl)
    if spec.cancel:
        return Decision((CancelRun(status.attempt),
                         _final(flowrun, StateName.CANCELLED,
                                "Cancelled: spec.cancel was set", now, counts)))
    if state is StateName.AWAITING_RETRY:
        due = status.next_retry_at or now
        if now < due:
            return Decision((Requeue((due - now).total_seconds()),))
        attempt = status.attempt + 1
        fields = {**state_fields(StateName.RETRYING, None), "attempt": attempt,
                  "pod": flow_pod_name(name, attempt), "nextRetryAt": None,
                  **dict(counts or {})}
        entry = history_entry(StateName.RETRYING, now, attempt, None)
        return Decision((CreatePod(attempt), PatchStatus(fields, (entry,))))
    limit = spec.pending_timeout_seconds or pending_timeout
    return _observe(flowrun, pod, outcome, counts, now, trouble, limit, infrastructure_retries)


def _finished(flowrun: FlowRunResource, counts: Mapping[str, Any] | None, now: datetime,
              default_ttl: int | None) -> Decision:
    actions: list[FlowAction] = []
    patch = _counts_patch(flowrun, counts)
    if patch:
        actions.append(PatchStatus(patch))
    ttl = flowrun.spec.ttl_seconds_after_finished
    if ttl is None:
        ttl = default_ttl
    end = flowrun.status.end_time
    if ttl is not None and end is not None:
        due = end + timedelta(seconds=ttl)
        if now >= due:
            return Decision((DeleteFlowRun(),))
        actions.append(Requeue((due - now).total_seconds()))
    return Decision(tuple(actions))


def _observe(flowrun: FlowRunResource, pod: Mapping[str, Any] | None,
             outcome: FlowOutcome | None, counts: Mapping[str, Any] | None,
             now: datetime, trouble: Trouble | None = None,
             pending_timeout: float | None = None, infra: int = 0) -> Decision:
    status, spec = flowrun.status, flowrun.spec
    phase = (pod or {}).get("status", {}).get("phase")
    waiting = phase == "Pending" or (
        pod is None and outcome is None and trouble is not None
        and trouble.attempt in (0, status.attempt) and status.state is not StateName.RUNNING
    )
    if waiting:
        if pod is not None:
            trouble = pending_pod_trouble(pod)
        started = attempt_started(status) or now
        waited = (now - started).total_seconds()
        if trouble is not None and trouble.permanent:
            drop = (CancelRun(status.attempt),) if pod is not None else ()
            # The controller posts the Warning event of a final state, with its reason.
            return Decision((*drop, _final(flowrun, StateName.CRASHED, trouble.message, now,
                                           counts, trouble.reason)))
        if pending_timeout is None or waited < pending_timeout:
            actions: list[FlowAction] = []
            fields = _counts_patch(flowrun, counts)
            if trouble is not None and (status.reason, status.message) != (trouble.reason,
                                                                           trouble.message):
                fields.update({"message": trouble.message, "reason": trouble.reason})
                actions.append(Event("Warning", trouble.reason, trouble.message))
            if fields:
                actions.insert(0, PatchStatus(fields))
            if pod is None:
                actions.append(CreatePod(status.attempt))  # the cause may be fixed by now
            left = None if pending_timeout is None else max(pending_timeout - waited, 0.0)
            retry_in = _CREATE_RETRY_S if pod is None else left
            if retry_in is not None:
                actions.append(Requeue(min(retry_in, left) if left is not None else retry_in))
            return Decision(tuple(actions))
    if pod is not None and phase not in ("Succeeded", "Failed") and not waiting:
        fields = _counts_patch(flowrun, counts)
        history: tuple[HistoryEntry, ...] = ()
        if phase == "Running" and status.state is not StateName.RUNNING:
            fields.update(state_fields(StateName.RUNNING, None))
            history = (history_entry(StateName.RUNNING, now, status.attempt, None),)
        return Decision((PatchStatus(fields, history),)) if fields else Decision()
    pod_label = flow_pod_name(flowrun.metadata.name or "?", max(status.attempt, 1))
    reason = pod_failure_reason(pod) if pod is not None else None
    result_ref: str | None = None
    why: str | None = None
    if waiting:
        # The pending deadline passed: the attempt never started.
        state = StateName.CRASHED
        why = Reason.PENDING_TIMEOUT
        detail = f": {trouble.message}" if trouble is not None else ""
        message: str | None = (
            f"Flow attempt {status.attempt} could not start within {pending_timeout:g} s{detail}"
        )
    elif reason == "DeadlineExceeded":
        state = StateName.TIMED_OUT
        why = Reason.DEADLINE_EXCEEDED
        limit = spec.timeout_seconds
        message = (
            f"Flow run exceeded timeout_seconds={limit:g}: flow pod {pod_label} was stopped by "
            f"activeDeadlineSeconds={math.ceil(limit)}" if limit is not None
            else f"Flow pod {pod_label} exceeded its activeDeadlineSeconds")
    elif reason in ("OOMKilled", "Evicted", "NodeLost") and pod is not None:
        state, why, message = ended_pod(pod, None, None)
    elif outcome is not None:
        state = _OUTCOME_STATES.get(outcome.state, StateName.CRASHED)
        message = outcome.message
        result_ref = outcome.result_ref if state is StateName.COMPLETED else None
    elif pod is None:
        state = StateName.CRASHED
        why = Reason.POD_DELETED
        message = f"Flow pod {pod_label} disappeared without writing an outcome record"
    else:
        state = StateName.CRASHED
        why = Reason.NO_OUTCOME
        message = (f"Flow pod {pod_label} ended ({phase}, {reason or 'no reason'}) without "
                   "writing an outcome record")
    drop = (CancelRun(status.attempt),) if waiting and pod is not None else ()
    platform = platform_retry(status, why, infra) if state is StateName.CRASHED else None
    if (state in _RETRYABLE and status.attempt <= spec.retries) or platform is not None:
        if platform is not None:
            number, delay = platform
            text = (f"{message or state.value} - {platform_suffix(number, infra, delay)}; the "
                    "next flow pod resumes the run, adopting its task runs")
        else:
            delay = retry_delay(flowrun, status.attempt)
            text = (f"{message or state.value} - retry {status.attempt}/{spec.retries} "
                    f"in {delay:g}s")
        due = now + timedelta(seconds=delay)
        fields = {**state_fields(StateName.AWAITING_RETRY, text, why), "nextRetryAt": iso(due),
                  **dict(counts or {})}
        return Decision((
            *drop,
            PatchStatus(fields, (
                history_entry(state, now, status.attempt, message, why),
                history_entry(StateName.AWAITING_RETRY, now, status.attempt, text, why),
            )),
            Requeue(delay),
        ))
    extra = {"resultRef": result_ref} if result_ref else {}
    return Decision((*drop, _final(flowrun, state, message, now, counts, why, **extra)))
