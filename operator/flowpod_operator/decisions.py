"""What the operator does next for one TaskRun: observed state in, actions out.

Pure: no kopf, no Kubernetes client, no clock, no store. ``decide`` reads the TaskRun (spec and
the status the operator wrote earlier), the pod of the current attempt as last observed (or None
when it is known not to exist), that attempt's outcome record, a cache record, the time and a
random source, and returns the actions that bring the status in line with what was observed.

Fewer writes, every transition kept: a pod seen Running is recorded only once it has been
running for ``running_delay`` seconds (a timer looks again then), so a short task's Running and
Completed go out in one status patch, each with its own timestamp in ``status.history``. An
Unschedulable pod is reported only once the scheduler has said so for ``UNSCHEDULABLE_GRACE_S``:
in a burst, pods wait for room for a moment, and telling each of them costs a patch and an event
when the API server is busiest.

Every decision is a function of observed state only, which is what makes the operator
restart-safe and idempotent: feeding the same observation twice yields the actions once (after
the first PatchStatus the status already says so, and the second call returns nothing), and a
restarted operator recomputes the same actions from the same objects. Pod names are
deterministic, so a CreatePod repeated after a crash is an adoption (409), never a second pod.

State machine (status.state):

    (none) --cache hit--> Cached
    (none) --> Pending [pod 1] --pod running--> Running --pod succeeded--> Completed
    Pending|Running|Retrying --pod failed / gone--> Failed | TimedOut | Crashed
        --retries left and condition allows--> AwaitingRetry(nextRetryAt)
        --nextRetryAt reached--> Retrying [pod n+1] --> Running --> ...
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowpod._contract.lifecycle import Schedule, failure_suffix
from flowpod._contract.reasons import Reason
from flowpod._contract.records import CacheRecord, Outcome
from flowpod._contract.resources import TaskRunResource
from flowpod._contract.retrying import RetryDecision, decide_retry
from flowpod._contract.states import FINAL_STATES, StateName
from flowpod._contract.states import outcome_state as outcome_state_name
from flowpod._contract.status import (
    FinalFields,
    HistoryEntry,
    final_fields,
    format_duration,
    history_entry,
    iso,
    state_fields,
)
from flowpod_operator.memory import raised_limit
from flowpod_operator.pods import pod_name
from flowpod_operator.problems import (
    Trouble,
    attempt_started,
    container_memory_limit,
    ended_pod,
    pending_pod_trouble,
    platform_retry,
    platform_suffix,
    pod_failure_reason,
)

__all__ = [
    "FINAL_STATES",
    "Action",
    "CreatePod",
    "DeletePod",
    "Decision",
    "Event",
    "PatchStatus",
    "Requeue",
    "UNSCHEDULABLE_GRACE_S",
    "decide",
    "pod_attempt",
    "pod_failure_reason",
    "report",
]

# How soon a refused pod create is tried again (the operator's error backoff also applies).
_CREATE_RETRY_S = 5.0
UNSCHEDULABLE_GRACE_S = 10.0
"""How long a pod may be Unschedulable before the run reports it (room is often made soon)."""
# States in which the current attempt's pod exists (or is about to).
_ACTIVE_STATES = frozenset({StateName.PENDING, StateName.RUNNING, StateName.RETRYING})


# -- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreatePod:
    """Create the pod of ``attempt`` (a 409 means it exists already: adopt it)."""

    attempt: int


@dataclass(frozen=True)
class DeletePod:
    """Delete the pod of ``attempt`` (it will never start, or must not start late)."""

    attempt: int


@dataclass(frozen=True)
class PatchStatus:
    """Merge ``fields`` into status and append ``history`` entries (wire form, camelCase)."""

    fields: Mapping[str, Any]
    history: tuple[HistoryEntry, ...] = ()

    def status_patch(self, previous_history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The status part of a merge patch: lists are replaced whole, so history is sent
        complete (the previous entries plus the new ones)."""
        body = dict(self.fields)
        if self.history:
            body["history"] = [*previous_history, *self.history]
        return body


@dataclass(frozen=True)
class Event:
    """A Kubernetes event on the TaskRun, for transitions a user wants to see."""

    type: str  # "Normal" | "Warning"
    reason: str
    message: str


@dataclass(frozen=True)
class Requeue:
    """Look at this TaskRun again after ``after_s`` seconds (a retry's delay)."""

    after_s: float


Action = CreatePod | DeletePod | PatchStatus | Event | Requeue


@dataclass(frozen=True)
class Decision:
    actions: tuple[Action, ...] = field(default_factory=tuple)

    def of(self, kind: type[Any]) -> list[Any]:
        """The actions of one kind, in order."""
        return [action for action in self.actions if isinstance(action, kind)]


NOTHING = Decision()


# -- reading pods -------------------------------------------------------------------------------


def pod_attempt(pod: Mapping[str, Any]) -> int | None:
    """The attempt number in a pod's ``flowpod.dev/attempt`` label, or None."""
    labels = pod.get("metadata", {}).get("labels") or {}
    try:
        return int(labels.get("flowpod.dev/attempt", ""))
    except ValueError:
        return None


def _pod_name(pod: Mapping[str, Any]) -> str:
    return str(pod.get("metadata", {}).get("name", "?"))


def _parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    return None


# -- helpers ------------------------------------------------------------------------------------


def _final_fields(taskrun: TaskRunResource, now: datetime) -> FinalFields:
    started = taskrun.status.start_time or taskrun.metadata.creation_timestamp or now
    return final_fields(started, now)


def _name(taskrun: TaskRunResource) -> str:
    return taskrun.metadata.name or "?"


# -- the decision -------------------------------------------------------------------------------


def decide(
    taskrun: TaskRunResource,
    pod: Mapping[str, Any] | None,
    outcome: Outcome | None,
    cache_hit: CacheRecord | None,
    now: datetime,
    rng: random.Random | None = None,
    *,
    trouble: Trouble | None = None,
    pending_timeout: float | None = None,
    infrastructure_retries: int = 0,
    running_delay: float = 0.0,
) -> Decision:
    """The actions that follow from what was observed.

    ``pod`` is the current attempt's pod (None: it does not exist); ``outcome`` the current
    attempt's outcome record (None: not written); ``cache_hit`` the record under
    ``spec.cacheKey`` (None: none); ``trouble`` why the last try to create the attempt's pod
    failed (None: it did not); ``pending_timeout`` the operator's default for how long an
    attempt may take to start (``spec.pendingTimeoutSeconds`` wins); ``infrastructure_retries``
    how many attempts beyond the run's own retries a platform fault (``INFRASTRUCTURE_REASONS``)
    gets; ``running_delay`` how long a pod must have been running before Running is recorded
    on its own (0: at once).
    """
    state = taskrun.status.state
    if state in FINAL_STATES:
        return NOTHING
    limit = taskrun.spec.pending_timeout_seconds or pending_timeout
    if state is None:
        return _deadline(_start(taskrun, cache_hit, now), limit)
    if state is StateName.AWAITING_RETRY:
        return _deadline(_after_delay(taskrun, now), limit)
    if state in _ACTIVE_STATES:
        return _observe_attempt(taskrun, pod, outcome, now, rng, trouble, limit,
                                infrastructure_retries, running_delay)
    return NOTHING


def _deadline(decision: Decision, pending_timeout: float | None) -> Decision:
    """An attempt that starts gets its pending deadline now: a pod that never changes again
    (a volume that never mounts) sends no event that would set it later."""
    if pending_timeout is None or not decision.of(CreatePod):
        return decision
    return Decision((*decision.actions, Requeue(float(pending_timeout))))


def _start(taskrun: TaskRunResource, cache_hit: CacheRecord | None, now: datetime) -> Decision:
    spec = taskrun.spec
    if (
        spec.cache_key is not None
        and not spec.refresh_cache
        and cache_hit is not None
        and cache_hit.cache_key == spec.cache_key
        and not cache_hit.is_expired(now)
    ):
        message = f"Cached result found under cache key {spec.cache_key!r}; no pod was started"
        fields = {
            **state_fields(StateName.CACHED, message),
            "resultRef": cache_hit.result_key,
            "startTime": iso(now),
            "endTime": iso(now),
            "duration": format_duration(0),
            "attempt": 0,
        }
        return Decision((
            PatchStatus(fields, (history_entry(StateName.CACHED, now, 0, message),)),
            Event("Normal", "Cached", message),
        ))
    fields = {
        **state_fields(StateName.PENDING, None),
        "attempt": 1,
        "pod": pod_name(_name(taskrun), 1),
        "startTime": iso(now),
        "observedGeneration": taskrun.metadata.generation,
    }
    return Decision((
        CreatePod(1),
        PatchStatus(fields, (history_entry(StateName.PENDING, now, 1, None),)),
    ))


def _after_delay(taskrun: TaskRunResource, now: datetime) -> Decision:
    status = taskrun.status
    due = status.next_retry_at
    if due is not None and now < due:
        return Decision((Requeue((due - now).total_seconds()),))
    attempt = status.attempt + 1
    message = f"Retry {attempt - 1}/{taskrun.spec.retries}: starting attempt {attempt}"
    fields = {
        **state_fields(StateName.RETRYING, message),
        "attempt": attempt,
        "pod": pod_name(_name(taskrun), attempt),
        "nextRetryAt": None,
    }
    return Decision((
        CreatePod(attempt),
        PatchStatus(fields, (history_entry(StateName.RETRYING, now, attempt, message),)),
    ))


def _observe_attempt(
    taskrun: TaskRunResource,
    pod: Mapping[str, Any] | None,
    outcome: Outcome | None,
    now: datetime,
    rng: random.Random | None,
    trouble: Trouble | None,
    pending_timeout: float | None,
    infra: int = 0,
    running_delay: float = 0.0,
) -> Decision:
    status = taskrun.status
    attempt = status.attempt
    if pod is not None and pod_attempt(pod) not in (None, attempt):
        return NOTHING  # an earlier attempt's pod: already accounted for
    if pod is None:
        if outcome is not None:
            return _conclude(taskrun, outcome_state(outcome), outcome, now, rng, None)
        if trouble is not None and trouble.attempt in (0, attempt) \
                and status.state is not StateName.RUNNING:
            return _cannot_start(taskrun, None, trouble, now, rng, pending_timeout)
        message = f"Pod {status.pod or '?'} of attempt {attempt} disappeared before it finished"
        return _conclude(taskrun, StateName.CRASHED, None, now, rng, message,
                         reason=Reason.POD_DELETED, infra=infra)
    phase = pod.get("status", {}).get("phase")
    if phase == "Succeeded":
        if outcome is None:
            message = f"Pod {_pod_name(pod)} exited 0 without writing an outcome record"
            return _conclude(taskrun, StateName.CRASHED, None, now, rng, message,
                             running_since=_started(pod), reason=Reason.NO_OUTCOME, infra=infra)
        return _conclude(taskrun, outcome_state(outcome), outcome, now, rng, None,
                         running_since=_started(pod))
    if phase == "Failed" or (phase == "Unknown" and pod_failure_reason(pod) == "NodeLost"):
        state, reason, why = ended_pod(
            pod, taskrun.spec.timeout_seconds,
            outcome_state(outcome) if outcome is not None else None,
        )
        if reason is None and state is StateName.FAILED:
            reason = Reason.TASK_FAILED
        return _conclude(taskrun, state, outcome, now, rng, why, running_since=_started(pod),
                         reason=reason, memory_limit=container_memory_limit(pod), infra=infra)
    if phase == "Pending":
        found = pending_pod_trouble(pod)
        recheck = None
        if found is not None and found.reason == Reason.UNSCHEDULABLE:
            recheck = _grace_left(_unschedulable_since(pod), now, UNSCHEDULABLE_GRACE_S)
            if recheck > 0:
                found = None  # not yet: the scheduler may find room in a moment
            else:
                recheck = None
        return _cannot_start(taskrun, pod, found, now, rng, pending_timeout, recheck)
    if phase == "Running" and status.state is not StateName.RUNNING:
        at = _started(pod) or now
        wait = _grace_left(_running_since(pod), now, running_delay)
        if wait > 0:
            # A short task's Running goes out with its Completed, in one patch.
            return Decision((Requeue(wait),))
        return Decision((
            PatchStatus(
                state_fields(StateName.RUNNING, None),
                (history_entry(StateName.RUNNING, at, attempt, None),),
            ),
        ))
    return NOTHING


def report(taskrun: TaskRunResource, trouble: Trouble) -> Decision:
    """Say why the run cannot progress - in its status and a Warning event - unless it already
    says exactly that (so a problem is told once per change, not once per look)."""
    status = taskrun.status
    if (status.reason, status.message) == (trouble.reason, trouble.message):
        return NOTHING
    return Decision((
        PatchStatus({"message": trouble.message, "reason": trouble.reason}),
        Event("Warning", trouble.reason, trouble.message),
    ))


def _cannot_start(
    taskrun: TaskRunResource,
    pod: Mapping[str, Any] | None,
    trouble: Trouble | None,
    now: datetime,
    rng: random.Random | None,
    pending_timeout: float | None,
    recheck: float | None = None,
) -> Decision:
    """The attempt has not started: say why (once per change of reason), end it at once when
    waiting cannot help, end it at the pending deadline otherwise, and look again (at the
    latest after ``recheck`` seconds, when given)."""
    status = taskrun.status
    attempt = status.attempt
    drop = (DeletePod(attempt),) if pod is not None else ()
    if trouble is not None and trouble.permanent:
        ended = _conclude(taskrun, StateName.CRASHED, None, now, rng, trouble.message,
                          reason=trouble.reason, retryable=False)
        return Decision((*drop, *ended.actions))
    started = attempt_started(taskrun.status) or now
    waited = (now - started).total_seconds()
    if pending_timeout is not None and waited >= pending_timeout:
        why = f": {trouble.message}" if trouble is not None else ""
        message = f"Attempt {attempt} could not start within {pending_timeout:g} s{why}"
        ended = _conclude(taskrun, StateName.CRASHED, None, now, rng, message,
                          reason=Reason.PENDING_TIMEOUT)
        return Decision((*drop, *ended.actions))
    actions: list[Action] = list(report(taskrun, trouble).actions) if trouble else []
    if pod is None and trouble is not None:
        actions.append(CreatePod(attempt))  # try again: the cause may be fixed by now
    left = None if pending_timeout is None else max(pending_timeout - waited, 0.0)
    if pod is None and trouble is not None:
        actions.append(Requeue(min(_CREATE_RETRY_S, left) if left is not None else _CREATE_RETRY_S))
    elif left is not None or recheck is not None:
        actions.append(Requeue(min(x for x in (left, recheck) if x is not None)))
    return Decision(tuple(actions))


def outcome_state(outcome: Outcome) -> StateName:
    """The TaskRun state an outcome record stands for (unknown words count as Crashed)."""
    return outcome_state_name(outcome.state)


def _started(pod: Mapping[str, Any]) -> datetime | None:
    return _parse_time(pod.get("status", {}).get("startTime"))


def _running_since(pod: Mapping[str, Any]) -> datetime | None:
    """When the pod's container started running (else when the pod started)."""
    for container in pod.get("status", {}).get("containerStatuses") or ():
        since = _parse_time(((container.get("state") or {}).get("running") or {})
                            .get("startedAt"))
        if since is not None:
            return since
    return _started(pod)


def _unschedulable_since(pod: Mapping[str, Any]) -> datetime | None:
    for condition in pod.get("status", {}).get("conditions") or ():
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return _parse_time(condition.get("lastTransitionTime"))
    return None


def _grace_left(since: datetime | None, now: datetime, grace: float) -> float:
    """Seconds until ``grace`` has passed since ``since`` (0: it has, or ``since`` is unknown).
    Never more than ``grace``: the timestamps come from other clocks (kubelet, scheduler)."""
    if since is None or grace <= 0:
        return 0.0
    elapsed = (now - since).total_seconds()
    return min(grace, max(grace - elapsed, 0.0))


def _conclude(
    taskrun: TaskRunResource,
    state: StateName,
    outcome: Outcome | None,
    now: datetime,
    rng: random.Random | None,
    message: str | None,
    *,
    running_since: datetime | None = None,
    reason: str | None = None,
    retryable: bool = True,
    memory_limit: str | None = None,
    infra: int = 0,
) -> Decision:
    spec, status = taskrun.spec, taskrun.status
    attempt = status.attempt
    if message is None and outcome is not None:
        message = outcome.message or (
            f"Task run failed with exception: {outcome.exception}" if outcome.exception else None
        )
    history: list[HistoryEntry] = []
    if status.state is not StateName.RUNNING and running_since is not None:
        # The pod ran and ended between two observations: record that it ran.
        history.append(history_entry(StateName.RUNNING, running_since, attempt, None))
    if state is StateName.COMPLETED:
        message = message or "Task run completed"
        fields: dict[str, Any] = {
            **state_fields(StateName.COMPLETED, message),
            **_final_fields(taskrun, now),
            "resultRef": outcome.result_ref if outcome is not None else None,
        }
        history.append(history_entry(StateName.COMPLETED, now, attempt, message))
        return Decision((
            PatchStatus(fields, tuple(history)),
            Event("Normal", "Completed", f"Attempt {attempt}: {message}"),
        ))
    message = message or f"Attempt {attempt} ended {state.value}"
    history.append(history_entry(state, now, attempt, message, reason))
    if not retryable:
        # Waiting or retrying cannot help (a missing ServiceAccount or Secret): end here.
        fields = {**state_fields(state, message, reason), **_final_fields(taskrun, now)}
        return Decision((
            PatchStatus(fields, tuple(history)),
            Event("Warning", _event_reason(state, reason), f"Attempt {attempt}: {message}"),
        ))
    # A pod killed from outside (timeout, eviction, deletion) never asked retry_condition_fn;
    # only an outcome the pod wrote carries its verdict.
    allows = outcome.retry_allowed if outcome is not None and state is StateName.FAILED else True
    verdict = decide_retry(
        max(attempt, 1), spec.retries, spec.retry_delay_seconds, spec.retry_jitter_factor,
        condition_allows=allows, rng=rng,
    )
    suffix = failure_suffix(verdict, spec.retries, allows, Schedule.OPERATOR)
    platform = platform_retry(status, reason, infra) if not verdict.retry and (
        state is StateName.CRASHED) else None
    if platform is not None:
        number, delay = platform
        verdict = RetryDecision(True, number, delay)
        suffix = platform_suffix(number, infra, delay)
    if verdict.retry:
        due = now + timedelta(seconds=verdict.delay_seconds)
        retry_message = f"{message} - {suffix}"
        fields = {
            **state_fields(StateName.AWAITING_RETRY, retry_message, reason),
            "nextRetryAt": iso(due),
        }
        raised = _raised_memory(taskrun, reason, memory_limit)
        if raised is not None:
            fields["memoryLimit"] = raised
            retry_message = f"{retry_message}, with its memory limit raised to {raised}"
            fields["message"] = retry_message
        history.append(
            history_entry(StateName.AWAITING_RETRY, now, attempt, retry_message, reason)
        )
        return Decision((
            PatchStatus(fields, tuple(history)),
            Event("Warning", "AwaitingRetry", f"Attempt {attempt}: {retry_message}"),
            Requeue(verdict.delay_seconds),
        ))
    if suffix is not None:
        message = f"{message} - {suffix}"
    fields = {**state_fields(state, message, reason), **_final_fields(taskrun, now)}
    history[-1] = history_entry(state, now, attempt, message, reason)
    return Decision((
        PatchStatus(fields, tuple(history)),
        Event("Warning", _event_reason(state, reason), f"Attempt {attempt}: {message}"),
    ))


def _event_reason(state: StateName, reason: str | None) -> str:
    """A final event's reason: the cause when it names one beyond the state itself."""
    return reason if reason is not None and reason != Reason.TASK_FAILED else state.value


def _raised_memory(
    taskrun: TaskRunResource, reason: str | None, limit: str | None
) -> str | None:
    """After an OOMKill, the next attempt's memory limit under ``spec.oomMemoryRaise``."""
    raise_by = taskrun.spec.oom_memory_raise
    if reason != Reason.OOM_KILLED or raise_by is None:
        return None
    current = taskrun.status.memory_limit or limit
    if current is None:
        return None  # no limit to raise: the node itself ran out of memory
    return raised_limit(current, raise_by.factor, raise_by.max)
