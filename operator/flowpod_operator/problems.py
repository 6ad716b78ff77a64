"""Why an attempt cannot start, or why it ended: pod failures and refusals, named.

Pure readers of what the operator observed - an API server's refusal to create a pod, a pod
that stays Pending, a pod that ended - turning each into a ``Trouble`` (a reason from
``flowpod._contract.reasons`` and a sentence for ``status.message``) or into the final state of
the attempt. The deciders (``decisions``, ``decisions_flowrun``) act on them; nothing here talks
to the API or reads a clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from flowpod._contract.reasons import INFRASTRUCTURE_REASONS, PERMANENT_REASONS, Reason
from flowpod._contract.resources import StateTransition
from flowpod._contract.resuming import is_platform_crash
from flowpod._contract.states import StateName

__all__ = [
    "PLATFORM_RETRY_DELAYS_S",
    "RunStatus",
    "Trouble",
    "attempt_started",
    "container_memory_limit",
    "create_refusal",
    "ended_pod",
    "pending_pod_trouble",
    "platform_retry",
    "platform_suffix",
    "pod_failure_reason",
]

PLATFORM_RETRY_DELAYS_S = (2.0, 10.0, 30.0)
"""Delays before the operator's own retries of platform failures, by how many came before."""


@dataclass(frozen=True)
class Trouble:
    """Something that keeps an attempt from starting: why (a ``Reason``) and what to do."""

    reason: str
    message: str
    attempt: int = 0
    """The attempt it concerns (0: the current one, whichever it is)."""

    @property
    def permanent(self) -> bool:
        """Waiting will not fix it: the attempt ends at once."""
        return self.reason in PERMANENT_REASONS


def _api_message(body: str) -> str:
    """The ``message`` of a Kubernetes Status body, else the body itself."""
    try:
        status = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return body.strip()


def create_refusal(status: int, body: str, pod: str) -> Trouble:
    """The API server refused to create ``pod`` with HTTP ``status``: name why."""
    detail = _api_message(body)
    lower = detail.lower()
    if status == 403 and "serviceaccount" in lower and "not found" in lower:
        reason, hint = Reason.SERVICE_ACCOUNT_NOT_FOUND, (
            "create the ServiceAccount (the Helm chart does, per namespace) or set "
            "spec.serviceAccountName"
        )
    elif status == 403 and "exceeded quota" in lower:
        reason, hint = Reason.QUOTA_EXCEEDED, (
            "waiting for the namespace's ResourceQuota to free up, or raise it"
        )
    elif status == 403:
        reason, hint = Reason.FORBIDDEN, "grant the operator's ServiceAccount the right to do so"
    elif status == 422 or status == 400:
        reason, hint = Reason.INVALID_POD_SPEC, "fix the run's spec (image, env, resources)"
    else:
        reason, hint = Reason.POD_CREATE_FAILED, "retrying"
    return Trouble(reason, f"Pod {pod} could not be created: {detail} ({hint})")


_MISSING = re.compile(r'(secret|configmap)s? "([^"]+)" not found', re.IGNORECASE)


def _conditions(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list(pod.get("status", {}).get("conditions") or ())


def pending_pod_trouble(pod: Mapping[str, Any]) -> Trouble | None:
    """Why a Pending pod is not starting, if it says: not schedulable, an image that does not
    pull, a Secret or ConfigMap that does not exist. None while it is simply on its way."""
    name = str(pod.get("metadata", {}).get("name", "?"))
    for condition in _conditions(pod):
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False" \
                and condition.get("reason") == "Unschedulable":
            detail = str(condition.get("message") or "no node fits")
            return Trouble(Reason.UNSCHEDULABLE, f"Pod {name} cannot be scheduled: {detail}")
    for status in pod.get("status", {}).get("containerStatuses") or ():
        waiting = (status.get("state") or {}).get("waiting") or {}
        word = waiting.get("reason")
        if not word or word in ("ContainerCreating", "PodInitializing"):
            continue
        detail = str(waiting.get("message") or "")
        text = f"Pod {name} cannot start: {word}" + (f": {detail}" if detail else "")
        missing = _MISSING.search(detail)
        if word == "CreateContainerConfigError" and missing:
            kind = missing.group(1).lower()
            reason = Reason.SECRET_NOT_FOUND if kind == "secret" else Reason.CONFIG_MAP_NOT_FOUND
            return Trouble(reason, text)
        known = {
            "ErrImagePull": Reason.ERR_IMAGE_PULL,
            "ImagePullBackOff": Reason.IMAGE_PULL_BACK_OFF,
            "InvalidImageName": Reason.INVALID_IMAGE_NAME,
            "ErrImageNeverPull": Reason.ERR_IMAGE_PULL,
            "CreateContainerConfigError": Reason.CREATE_CONTAINER_CONFIG_ERROR,
            "CreateContainerError": Reason.CREATE_CONTAINER_ERROR,
        }
        if word in known:
            return Trouble(known[word], text)
    return None


def _terminated_states(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = []
    for status in pod.get("status", {}).get("containerStatuses") or []:
        for part in ("state", "lastState"):
            terminated = (status.get(part) or {}).get("terminated")
            if terminated:
                found.append(terminated)
    return found


def pod_failure_reason(pod: Mapping[str, Any]) -> str | None:
    """Why a pod ended, when the reason is one the operator treats specially:
    ``DeadlineExceeded`` (activeDeadlineSeconds), ``Evicted``, ``NodeLost`` or ``OOMKilled``."""
    reason = pod.get("status", {}).get("reason")
    if reason in ("DeadlineExceeded", "Evicted", "NodeLost"):
        return str(reason)
    for terminated in _terminated_states(pod):
        if terminated.get("reason") == "OOMKilled":
            return "OOMKilled"
    return None


def exit_code(pod: Mapping[str, Any]) -> int | None:
    for terminated in _terminated_states(pod):
        code = terminated.get("exitCode")
        if isinstance(code, int):
            return code
    return None


def container_memory_limit(pod: Mapping[str, Any]) -> str | None:
    """The memory limit of the pod's (first) container, as written (e.g. ``256Mi``)."""
    for container in pod.get("spec", {}).get("containers") or ():
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if limit is not None:
            return str(limit)
    return None


def ended_pod(
    pod: Mapping[str, Any], timeout_seconds: float | None, outcome_state: StateName | None
) -> tuple[StateName, str | None, str | None]:
    """A Failed pod's attempt: its state, reason and message (None: the outcome's own)."""
    name = str(pod.get("metadata", {}).get("name", "?"))
    reason = pod_failure_reason(pod)
    if reason == "DeadlineExceeded":
        if timeout_seconds is None:
            return (StateName.TIMED_OUT, Reason.DEADLINE_EXCEEDED,
                    f"Pod {name} exceeded its activeDeadlineSeconds")
        deadline = pod.get("spec", {}).get("activeDeadlineSeconds")
        at = f" at activeDeadlineSeconds={deadline}" if deadline is not None else ""
        return StateName.TIMED_OUT, Reason.DEADLINE_EXCEEDED, (
            f"Task run exceeded timeout_seconds={timeout_seconds:g}: pod {name} did not stop by "
            f"itself and was ended by the kubelet{at}"
        )
    if reason == "Evicted":
        detail = pod.get("status", {}).get("message") or "no message"
        return StateName.CRASHED, Reason.EVICTED, f"Pod {name} was evicted ({detail})"
    if reason == "NodeLost":
        return StateName.CRASHED, Reason.NODE_LOST, f"Pod {name} was lost with its node"
    if reason == "OOMKilled":
        limit = container_memory_limit(pod)
        at = f" at limit {limit}" if limit else " (no memory limit set: the node ran out)"
        return StateName.CRASHED, Reason.OOM_KILLED, (
            f"Pod {name} was OOMKilled{at}: the task used more memory than its limit; raise "
            "resources.limits.memory or set oomMemoryRaise"
        )
    if outcome_state is not None:
        return outcome_state, None, None
    return StateName.CRASHED, Reason.NO_OUTCOME, (
        f"Pod {name} failed without writing an outcome record (exit code {exit_code(pod)}"
        f"{_termination_detail(pod)})"
    )


def _termination_detail(pod: Mapping[str, Any]) -> str:
    """', <reason>: <message>' of the container's end when the kubelet gives one beyond a plain
    Error (e.g. StartError: the runtime could not start the container), so the message says who
    failed: the task's process or the node."""
    for terminated in _terminated_states(pod):
        reason = terminated.get("reason")
        if reason and reason not in ("Error", "Completed"):
            text = " ".join(str(terminated.get("message") or "").split())
            if len(text) > 300:
                text = text[:297] + "..."
            return f", {reason}: {text}" if text else f", {reason}"
    return ""


# -- the attempts of a run (TaskRun or FlowRun status) ------------------------------------------


class RunStatus(Protocol):
    """What both kinds of run status have that the attempt bookkeeping reads."""

    @property
    def attempt(self) -> int: ...
    @property
    def history(self) -> Sequence[StateTransition]: ...
    @property
    def start_time(self) -> datetime | None: ...


def attempt_started(status: RunStatus) -> datetime | None:
    """When the current attempt began: its first history entry (Pending or Retrying)."""
    for entry in status.history:
        if entry.attempt == status.attempt and entry.state in (StateName.PENDING,
                                                               StateName.RETRYING):
            return entry.timestamp
    return status.start_time


def platform_retry(status: RunStatus, reason: str | None,
                   budget: int) -> tuple[int, float] | None:
    """The operator's own retry of an attempt that crashed for ``reason``, once the run's own
    retries are spent: (which platform retry this is, from 1; its delay), or None when the
    reason says something about the code, not the platform, or the ``budget`` is used up."""
    if reason not in INFRASTRUCTURE_REASONS:
        return None
    used = sum(1 for entry in status.history if is_platform_crash(entry))
    if used >= budget:
        return None
    return used + 1, PLATFORM_RETRY_DELAYS_S[min(used, len(PLATFORM_RETRY_DELAYS_S) - 1)]


def platform_suffix(number: int, budget: int, delay: float) -> str:
    """What the status message adds when the operator retries a platform failure."""
    return (f"the operator retries this platform failure ({number}/{budget}), "
            f"starting in {delay:g} s")
