"""The FlowRun side of the operator: watch FlowRuns and their flow pods, reconcile each FlowRun.

Same shape as ``handlers.Reconciler`` for TaskRuns: every event leads to ``reconcile`` for the
FlowRun concerned, which takes its lock, gathers the observation (the FlowRun, the current
attempt's flow pod from the watch or one GET, the attempt's flow outcome once the pod has ended,
the counts of its TaskRuns), calls the pure ``decisions_flowrun.decide_flowrun`` and carries out
the actions. The TaskRun watch feeds ``taskrun_seen``, which keeps each FlowRun's TaskRun states
in memory (restart-safe: the watch lists every TaskRun again) and batches the count patches: a
FlowRun whose TaskRuns change is reconciled at most once per ``COUNT_BATCH_S``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from flowpod._contract.resources import FlowRunResource
from flowpod._contract.states import FINAL_STATES, StateName
from flowpod_operator.decisions import CreatePod, Event, PatchStatus, Requeue
from flowpod_operator.decisions_flowrun import (
    CancelRun,
    DeleteFlowRun,
    count_task_runs,
    decide_flowrun,
)
from flowpod_operator.kube import Conflict, KubeApi
from flowpod_operator.pods import (
    FLOWRUN_LABEL,
    ROLE_LABEL,
    flow_pod_manifest,
    flow_pod_name,
    label_value,
)
from flowpod_operator.reconciling import GONE, Key, KeyedLoop, newer
from flowpod_operator.settings import OperatorConfig
from flowpod_operator.store import StoreRegistry

__all__ = ["COUNT_BATCH_S", "FlowRunController"]

logger = logging.getLogger("flowpod.operator.flowruns")

COUNT_BATCH_S = 0.5
_ACTIVE = frozenset({StateName.PENDING, StateName.RUNNING, StateName.RETRYING})
_FINAL_VALUES = frozenset(state.value for state in FINAL_STATES)
_MAX_CONFLICTS = 5
_WARN_STATES = frozenset({"Failed", "TimedOut", "Crashed", "AwaitingRetry"})


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class FlowRunController(KeyedLoop):
    """The operator's memory of FlowRuns, their flow pods and their TaskRuns' states."""

    def __init__(self, config: OperatorConfig, api: KubeApi, stores: StoreRegistry,
                 executor: ThreadPoolExecutor,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(executor, "FlowRun", logger)
        self.config = config
        self.api = api
        self.stores = stores
        self.clock = clock
        self.flowruns: dict[Key, dict[str, Any]] = {}
        self.task_states: dict[Key, dict[str, str | None]] = {}
        self._count_pending: set[Key] = set()

    def _tracks(self, key: Key) -> bool:
        return key in self.flowruns

    # -- watch events ---------------------------------------------------------------------------

    async def flowrun_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if event_type == "DELETED":
            self._forget(key)
            return
        current = self.flowruns.get(key)
        if current is not None and not newer(body, current):
            return
        self.flowruns[key] = body
        await self.reconcile(key)

    async def pod_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        """A flow pod (label flowpod.dev/role=flow) changed."""
        meta = body.get("metadata", {})
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        owner = next((str(ref.get("name")) for ref in meta.get("ownerReferences") or ()
                      if ref.get("kind") == "FlowRun"), None)
        if owner is None or (namespace, owner) not in self.flowruns:
            self.pods.pop((namespace, name), None)
            return
        if event_type == "DELETED":
            self.pods[(namespace, name)] = GONE
        else:
            current = self.pods.get((namespace, name))
            if current and not newer(body, current):
                return
            self.pods[(namespace, name)] = body
        await self.reconcile((namespace, owner))

    def taskrun_seen(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Track a TaskRun's state under its FlowRun; schedule one batched count update."""
        meta = body.get("metadata", {})
        flowrun = (body.get("spec") or {}).get("flowRun") or (meta.get("labels") or {}).get(
            FLOWRUN_LABEL)
        if not flowrun:
            return
        key = (str(meta.get("namespace")), str(flowrun))
        states = self.task_states.setdefault(key, {})
        name = str(meta.get("name"))
        if event_type == "DELETED":
            changed = states.pop(name, None) is not None
        else:
            state = (body.get("status") or {}).get("state")
            changed = name not in states or states[name] != state
            states[name] = state
        if changed and key in self.flowruns and key not in self._count_pending:
            self._count_pending.add(key)
            asyncio.get_running_loop().call_later(COUNT_BATCH_S, self._count_fire, key)

    def _count_fire(self, key: Key) -> None:
        self._count_pending.discard(key)
        self._spawn(self.reconcile(key))

    def _forget(self, key: Key) -> None:
        body = self.flowruns.pop(key, None)
        self._drop_key(key)
        self.task_states.pop(key, None)
        self.troubles.pop(key, None)
        attempts = int((body or {}).get("status", {}).get("attempt") or 0)
        for attempt in range(1, attempts + 1):
            self.pods.pop((key[0], flow_pod_name(key[1], attempt)), None)

    async def _reconcile_locked(self, key: Key) -> None:
        for _ in range(_MAX_CONFLICTS):
            body = self.flowruns.get(key)
            if body is None:
                return
            try:
                flowrun = FlowRunResource.from_object(body)
            except ValueError as exc:
                await self._reject(key, body, exc)
                return
            try:
                await self._step(key, body, flowrun)
                return
            except Conflict:
                fresh = await self._call(self.api.read_flowrun, *key)
                if fresh is None:
                    self._forget(key)
                    return
                self.flowruns[key] = fresh
        raise RuntimeError(f"status patch kept conflicting {_MAX_CONFLICTS} times")

    async def _reject(self, key: Key, body: dict[str, Any], exc: ValueError) -> None:
        self.flowruns.pop(key, None)
        if (body.get("status") or {}).get("state"):
            return
        message = f"FlowRun {key[0]}/{key[1]} is invalid and was not run: {exc}"[:2000]
        logger.error("%s", message)
        await self._call(self.api.patch_flowrun_status, key[0], key[1],
                         body.get("metadata", {}).get("resourceVersion"),
                         {"state": StateName.FAILED.value, "stateType": "FAILED",
                          "message": message})

    async def _step(self, key: Key, body: dict[str, Any], flowrun: FlowRunResource) -> None:
        pod: dict[str, Any] | None = None
        outcome = None
        if flowrun.status.state in _ACTIVE and flowrun.status.attempt >= 1:
            pod = await self._observe_pod(key[0], flow_pod_name(key[1], flowrun.status.attempt),
                                           self.api.read_pod)
            phase = (pod or {}).get("status", {}).get("phase")
            if pod is None or phase in ("Succeeded", "Failed"):
                outcome = await self._call(self.stores.flow_outcome, flowrun,
                                           flowrun.status.attempt)
        # After a restart the FlowRun may be seen before its TaskRuns: keep the counts it has
        # until one of them shows up, instead of flapping to 0/0.
        counts = None
        if key in self.task_states or flowrun.status.task_runs is None:
            counts = count_task_runs(self.task_states.get(key, {}).values())
        decision = decide_flowrun(flowrun, pod, outcome, counts, self.clock(),
                                  self.config.ttl_seconds, trouble=self.troubles.get(key),
                                  pending_timeout=self.config.pending_timeout_seconds,
                                  infrastructure_retries=self.config.infrastructure_retries)
        for action in decision.actions:
            if isinstance(action, CreatePod):
                await self._create_pod(key, flow_pod_manifest(flowrun, action.attempt, self.config),
                                       action.attempt, self.api.create_pod)
            elif isinstance(action, Event):
                event_body = {**body, "kind": "FlowRun"}
                self._spawn(self._call(self.api.post_event, event_body, action.type,
                                       action.reason, action.message))
            elif isinstance(action, PatchStatus):
                previous = body.get("status", {}).get("history") or []
                patched = await self._call(
                    self.api.patch_flowrun_status, key[0], key[1],
                    body.get("metadata", {}).get("resourceVersion"),
                    action.status_patch(previous),
                )
                if newer(patched, self.flowruns.get(key)):
                    self.flowruns[key] = patched
                body = patched
                self._warn_if_failed(action, patched)
            elif isinstance(action, CancelRun):
                await self._cancel(key, action.attempt)
            elif isinstance(action, DeleteFlowRun):
                logger.info("FlowRun %s/%s: TTL after finishing passed, deleting it", *key)
                await self._call(self.api.delete_flowrun, *key)
                self._forget(key)
                return
            elif isinstance(action, Requeue):
                self.schedule(key, action.after_s)

    def _warn_if_failed(self, action: PatchStatus, body: dict[str, Any]) -> None:
        """A Warning event for a flow attempt that did not complete (kubectl describe)."""
        state = action.fields.get("state")
        if state not in _WARN_STATES:
            return
        body = {**body, "kind": "FlowRun"}
        message = str(action.fields.get("message") or state)
        reason = str(action.fields.get("reason") or state)
        self._spawn(self._call(self.api.post_event, body, "Warning", reason, message))

    async def _cancel(self, key: Key, attempt: int) -> None:
        """Stop the flow pod first (so it submits nothing more), then the task runs."""
        namespace, name = key
        if attempt >= 1:
            await self._call(self.api.delete_pod, namespace, flow_pod_name(name, attempt))
        for taskrun, state in list(self.task_states.get(key, {}).items()):
            if state not in _FINAL_VALUES:
                await self._cancel_taskrun(namespace, taskrun)
        pods = await self._call(self.api.list_pods, namespace,
                                f"{FLOWRUN_LABEL}={label_value(name)}")
        for pod in pods:
            if (pod.get("metadata", {}).get("labels") or {}).get(ROLE_LABEL) == "flow" or \
                    pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                await self._call(self.api.delete_pod, namespace, pod["metadata"]["name"])

    async def _cancel_taskrun(self, namespace: str, name: str) -> None:
        for _ in range(_MAX_CONFLICTS):
            body = await self._call(self.api.read_taskrun, namespace, name)
            if body is None:
                return
            status = body.get("status") or {}
            if status.get("state") in _FINAL_VALUES:
                return
            now = iso(self.clock())
            message = "Cancelled with its flow run"
            entry = {"state": "Cancelled", "type": "CANCELLED", "timestamp": now,
                     "attempt": int(status.get("attempt") or 0), "message": message}
            try:
                await self._call(
                    self.api.patch_status, namespace, name,
                    body.get("metadata", {}).get("resourceVersion"),
                    {"state": "Cancelled", "stateType": "CANCELLED", "message": message,
                     "endTime": now, "nextRetryAt": None,
                     "history": [*(status.get("history") or []), entry]},
                )
                return
            except Conflict:
                continue
