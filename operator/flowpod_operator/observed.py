"""What the TaskRun controller keeps of the objects it watches: only what its decisions read.

A pod as the API server sends it is 5-10 KB of JSON and several times that as Python objects
(``managedFields``, the defaulted spec, volumes, tolerations); a TaskRun carries
``managedFields`` too. Keeping whole bodies of every active run is what made the operator's
memory grow with the number of runs in flight. ``slim_pod`` and ``slim_taskrun`` keep the
fields ``decisions`` and ``problems`` read, in the same shape (so the pure decisions read a
slim pod exactly as a full one), and ``same_pod`` says whether a pod event changed any of
them - most pod events (scheduled, IP assigned, ready, our own create echoed) do not, and are
not reconciled at all.

Pure: dicts in, dicts out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowpod._contract.records import MAX_TERMINATION_MESSAGE, TERMINATION_PREFIX, Outcome

__all__ = ["outcome_told_by", "same_pod", "slim_pod", "slim_taskrun"]

# Waiting reasons that mean "on its way": the decisions treat them as no reason at all.
_ON_ITS_WAY = frozenset({"ContainerCreating", "PodInitializing"})
# The metadata a TaskRun keeps: what the models, the pod manifest and the events read.
_TASKRUN_META = ("name", "namespace", "uid", "resourceVersion", "generation",
                 "creationTimestamp", "deletionTimestamp", "labels", "ownerReferences")


def slim_taskrun(body: Mapping[str, Any]) -> dict[str, Any]:
    """The TaskRun without what no decision reads (``managedFields``, annotations)."""
    meta = body.get("metadata") or {}
    slim: dict[str, Any] = {key: value for key, value in body.items() if key != "metadata"}
    slim["metadata"] = {key: meta[key] for key in _TASKRUN_META if key in meta}
    return slim


def _container_state(state: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not state:
        return None
    waiting = state.get("waiting")
    if waiting is not None:
        if waiting.get("reason") in _ON_ITS_WAY:
            return None
        return {"waiting": {key: waiting[key] for key in ("reason", "message") if key in waiting}}
    terminated = state.get("terminated")
    if terminated is not None:
        # A task pod's own message is its outcome (``Outcome.to_termination_message``), kept
        # whole: it spares the store read. Any other is the runtime's words on why a container
        # that never ran ended (StartError), which the NoOutcome status message carries:
        # bounded as the status keeps it.
        kept = {key: terminated[key] for key in ("exitCode", "reason") if key in terminated}
        message = str(terminated.get("message") or "")
        if message:
            told = message.startswith(TERMINATION_PREFIX)
            kept["message"] = message[:MAX_TERMINATION_MESSAGE] if told else message[:300]
        return {"terminated": kept}
    running = state.get("running")
    if running is not None:
        return {"running": {key: running[key] for key in ("startedAt",) if key in running}}
    return None


def slim_pod(body: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's name, labels and resourceVersion, its deadline and memory limit, and the
    status fields that say how far it got and why it stopped."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    slim_meta = {key: meta[key] for key in ("name", "namespace", "resourceVersion", "labels")
                 if key in meta}
    slim_spec: dict[str, Any] = {}
    if spec.get("activeDeadlineSeconds") is not None:
        slim_spec["activeDeadlineSeconds"] = spec["activeDeadlineSeconds"]
    containers = []
    for container in spec.get("containers") or ():
        limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        containers.append({"name": container.get("name"),
                           **({"resources": {"limits": {"memory": limit}}} if limit else {})})
    if containers:
        slim_spec["containers"] = containers
    slim_status: dict[str, Any] = {key: status[key] for key in
                                   ("phase", "reason", "message", "startTime") if key in status}
    unschedulable = [
        {key: condition[key] for key in ("type", "status", "reason", "message",
                                         "lastTransitionTime") if key in condition}
        for condition in status.get("conditions") or ()
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False"
    ]
    if unschedulable:
        slim_status["conditions"] = unschedulable
    statuses = []
    for container in status.get("containerStatuses") or ():
        entry: dict[str, Any] = {"name": container.get("name")}
        for part in ("state", "lastState"):
            kept = _container_state(container.get(part))
            if kept is not None:
                entry[part] = kept
        statuses.append(entry)
    if statuses:
        slim_status["containerStatuses"] = statuses
    return {"metadata": slim_meta, "spec": slim_spec, "status": slim_status}


def same_pod(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two slim pods say the same to the decisions (their resourceVersions aside)."""
    return a.get("status") == b.get("status") and a.get("spec") == b.get("spec") and (
        (a.get("metadata") or {}).get("labels") == (b.get("metadata") or {}).get("labels"))


def outcome_told_by(pod: Mapping[str, Any] | None, attempt: int) -> Outcome | None:
    """The outcome of ``attempt`` its ended pod carries in its termination message; None when
    the pod has none (it crashed, was killed, is older than this contract, or its outcome did
    not fit): the store record is read then."""
    if pod is None:
        return None
    for container in (pod.get("status") or {}).get("containerStatuses") or ():
        terminated = (container.get("state") or {}).get("terminated") or {}
        outcome = Outcome.from_termination_message(terminated.get("message"))
        if outcome is not None and outcome.attempt == attempt:
            return outcome
    return None
