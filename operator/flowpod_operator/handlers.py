"""kopf wiring: watch TaskRuns and their pods, and reconcile each TaskRun from what was seen.

Both watches use ``@kopf.on.event``, which stores nothing on the objects: no progress
annotations, no finalizers, no last-handled-configuration - the only writes per transition are
the operator's own (one pod create, one status patch, maybe one event). Every event leads to
``Reconciler.reconcile`` for the TaskRun concerned, which

1. takes the TaskRun's lock (its own watch and its pods' watch run concurrently),
2. gathers the observation: the TaskRun as last seen, the current attempt's pod (from the watch,
   else one GET), the attempt's outcome when the pod has ended (from the pod's termination
   message, else the store's record), the cache record when the run is new,
3. calls the pure ``decisions.decide`` and carries out the actions through ``kube``.

Retries wait in one shared scheduler (``loop.call_later`` handles, one per waiting TaskRun, no
task or daemon per object); a restart re-derives the same waits from ``status.nextRetryAt``.
Errors (API or store unreachable) re-run the reconciliation with a capped backoff.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import signal
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import kopf
from kopf._core.reactor.inventory import ResourceMemories  # kopf.run(memories=...) takes one

from flowpod._contract.reasons import Reason
from flowpod._contract.resources import GROUP, VERSION, TaskRunResource
from flowpod._contract.states import StateName
from flowpod._storage import S3StoreError
from flowpod_operator.decisions import (
    FINAL_STATES,
    CreatePod,
    DeletePod,
    Event,
    PatchStatus,
    Requeue,
    decide,
    report,
)
from flowpod_operator.flowruns import FlowRunController
from flowpod_operator.kube import Conflict, KubeApi
from flowpod_operator.observed import outcome_told_by, same_pod, slim_pod, slim_taskrun
from flowpod_operator.pods import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLE_LABEL,
    pod_manifest,
    pod_name,
)
from flowpod_operator.problems import Trouble
from flowpod_operator.reconciling import GONE, Key, KeyedLoop, newer, strictly_newer
from flowpod_operator.settings import OperatorConfig
from flowpod_operator.store import StoreRegistry, start_bucket_creator

__all__ = ["ForgetfulMemories", "Reconciler", "configure", "log_counters"]

logger = logging.getLogger("flowpod.operator")

_ACTIVE = frozenset({StateName.PENDING, StateName.RUNNING, StateName.RETRYING})
_MAX_CONFLICTS = 5
_FINAL_WORDS = frozenset(state.value for state in FINAL_STATES)


def _finished_state(body: dict[str, Any]) -> bool:
    return (body.get("status") or {}).get("state") in _FINAL_WORDS


def _owner(pod: dict[str, Any]) -> str | None:
    for ref in pod.get("metadata", {}).get("ownerReferences") or ():
        if ref.get("kind") == "TaskRun" and str(ref.get("apiVersion", "")).startswith(GROUP):
            return str(ref.get("name"))
    return None


class Reconciler(KeyedLoop):
    """The operator's memory of what it has seen, and the loop that acts on it."""

    def __init__(
        self,
        config: OperatorConfig,
        api: KubeApi,
        stores: StoreRegistry,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_in_flight: int | None = None,
    ) -> None:
        self.config = config
        self.api = api
        self.stores = stores
        self.rng = rng or random.Random()
        self.clock = clock
        super().__init__(
            ThreadPoolExecutor(config.api_workers, thread_name_prefix="flowpod-api"),
            "TaskRun", logger, max_in_flight,
        )
        self.taskruns: dict[Key, dict[str, Any]] = {}
        self.counts: Counter[str] = Counter()

    def _tracks(self, key: Key) -> bool:
        return key in self.taskruns

    def _keep_pod(self, body: dict[str, Any]) -> dict[str, Any]:
        return slim_pod(body)

    # -- watch events ---------------------------------------------------------------------------

    async def taskrun_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        key = (str(meta.get("namespace")), str(meta.get("name")))
        self.counts["watch taskruns"] += 1
        if event_type == "DELETED":
            self._forget(key)
            return
        current = self.taskruns.get(key)
        if current is not None and not strictly_newer(body, current):
            # Stale, or our own status patch echoed back: its answer is already here.
            self.counts["watch taskruns skipped"] += 1
            return
        if current is None and _finished_state(body):
            # A finished run (start-up listing, or a later change to one): nothing to decide.
            self.counts["watch taskruns skipped"] += 1
            return
        self.taskruns[key] = slim_taskrun(body)
        await self.reconcile_soon(key)

    async def pod_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata", {})
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        self.counts["watch pods"] += 1
        owner = _owner(body)
        if owner is None:
            return
        pod_key = (namespace, name)
        if (namespace, owner) not in self.taskruns:
            # Its TaskRun is finished or not seen yet (start-up: the TaskRun's own event reads
            # the pod then). Remembering only active runs' pods keeps memory bounded.
            self.pods.pop(pod_key, None)
            self.counts["watch pods skipped"] += 1
            return
        if event_type == "DELETED":
            self.pods[pod_key] = GONE
        else:
            current = self.pods.get(pod_key)
            if current is not None and current is not GONE and not strictly_newer(body, current):
                self.counts["watch pods skipped"] += 1
                return
            slim = slim_pod(body)
            self.pods[pod_key] = slim
            if current is not None and current is not GONE and same_pod(slim, current):
                # Scheduled, an IP, ready, our create echoed: nothing a decision reads.
                self.counts["watch pods skipped"] += 1
                return
        await self.reconcile_soon((namespace, owner))

    def counters(self) -> dict[str, int]:
        """Watch events seen and skipped, reconciles, store reads and API requests by kind,
        since start-up (the operator logs them; the benchmark reads them)."""
        return {**self.counts, **{f"api {kind}": n for kind, n in self.api.requests.items()}}

    def _forget(self, key: Key) -> None:
        body = self.taskruns.pop(key, None)
        self.troubles.pop(key, None)
        self._drop_key(key)
        attempts = int((body or {}).get("status", {}).get("attempt") or 0)
        for attempt in range(1, attempts + 1):
            self.pods.pop((key[0], pod_name(key[1], attempt)), None)

    async def _reconcile_locked(self, key: Key) -> None:
        for _ in range(_MAX_CONFLICTS):
            body = self.taskruns.get(key)
            if body is None:
                return
            try:
                taskrun = TaskRunResource.from_object(body)
            except ValueError as exc:
                await self._reject(key, body, exc)
                return
            if taskrun.status.state in FINAL_STATES:
                self._finished(key, taskrun)
                return
            try:
                await self._step(key, body, taskrun)
                return
            except Conflict:
                self.counts["conflicts"] += 1
                fresh = await self._call(self.api.read_taskrun, *key)
                if fresh is None:
                    self._forget(key)
                    return
                self.taskruns[key] = slim_taskrun(fresh)
        raise RuntimeError(f"status patch kept conflicting {_MAX_CONFLICTS} times")

    async def _reject(self, key: Key, body: dict[str, Any], exc: ValueError) -> None:
        """A TaskRun the API server accepted but the models refuse (e.g. a CRD older than this
        operator): fail it with the reason instead of leaving it without a state."""
        self.taskruns.pop(key, None)
        if (body.get("status") or {}).get("state"):
            return
        message = f"TaskRun {key[0]}/{key[1]} is invalid and was not run: {exc}"[:2000]
        logger.error("%s", message)
        await self._call(self.api.patch_status, key[0], key[1],
                         body.get("metadata", {}).get("resourceVersion"),
                         {"state": StateName.FAILED.value, "stateType": "FAILED",
                          "message": message})
        self._spawn(self._call(self.api.post_event, body, "Warning", "Invalid", message))

    def _finished(self, key: Key, taskrun: TaskRunResource) -> None:
        # Finished runs need no memory: later events for them decide nothing. Their timers
        # (a pending deadline, a delayed Running) go too.
        self.taskruns.pop(key, None)
        self.troubles.pop(key, None)
        self._drop_key(key)
        for attempt in range(1, taskrun.status.attempt + 1):
            self.pods.pop((key[0], pod_name(key[1], attempt)), None)

    async def _read_store(self, key: Key, body: dict[str, Any], taskrun: TaskRunResource,
                          read: Callable[..., Any], *args: Any) -> Any:
        """A read from the result store; when the store fails, the run says so (once per
        change) before the error goes to the retry backoff."""
        try:
            return await self._call(read, *args)
        except S3StoreError as exc:
            told = report(taskrun, Trouble(Reason.STORAGE_UNAVAILABLE,
                                           f"The result store cannot be read: {exc}"))
            for action in told.of(PatchStatus):
                patched = await self._call(self.api.patch_status, key[0], key[1],
                                           body.get("metadata", {}).get("resourceVersion"),
                                           action.status_patch([]))
                self.taskruns[key] = slim_taskrun(patched)
            for event in told.of(Event):
                self._spawn(self._call(self.api.post_event, body, event.type, event.reason,
                                       event.message))
            raise

    async def _step(self, key: Key, body: dict[str, Any], taskrun: TaskRunResource) -> None:
        state = taskrun.status.state
        pod: dict[str, Any] | None = None
        outcome = None
        cache_hit = None
        if state in _ACTIVE:
            pod = await self._observe_pod(key[0], pod_name(key[1], taskrun.status.attempt),
                                           self.api.read_pod)
            phase = (pod or {}).get("status", {}).get("phase")
            if pod is None or phase in ("Succeeded", "Failed"):
                outcome = outcome_told_by(pod, taskrun.status.attempt)
                if outcome is not None:
                    self.counts["pod outcomes"] += 1
                else:
                    self.counts["store outcome reads"] += 1
                    outcome = await self._read_store(key, body, taskrun, self.stores.outcome,
                                                     taskrun, taskrun.status.attempt)
        elif state is None and taskrun.spec.cache_key and not taskrun.spec.refresh_cache:
            self.counts["store cache reads"] += 1
            cache_hit = await self._read_store(key, body, taskrun, self.stores.cache_record,
                                               taskrun)
        decision = decide(taskrun, pod, outcome, cache_hit, self.clock(), self.rng,
                          trouble=self.troubles.get(key),
                          pending_timeout=self.config.pending_timeout_seconds,
                          infrastructure_retries=self.config.infrastructure_retries,
                          running_delay=self.config.running_report_delay_seconds)
        self.counts["reconciles"] += 1
        for action in decision.actions:
            if isinstance(action, CreatePod):
                await self._create_pod(key, pod_manifest(taskrun, action.attempt, self.config),
                                       action.attempt, self.api.create_pod)
            elif isinstance(action, DeletePod):
                await self._call(self.api.delete_pod, key[0], pod_name(key[1], action.attempt))
            elif isinstance(action, PatchStatus):
                previous = body.get("status", {}).get("history") or []
                patched = slim_taskrun(await self._call(
                    self.api.patch_status, key[0], key[1],
                    body.get("metadata", {}).get("resourceVersion"),
                    action.status_patch(previous),
                ))
                if newer(patched, self.taskruns.get(key)):
                    self.taskruns[key] = patched
                body = patched
            elif isinstance(action, Event):
                if action.type == "Normal" and not self.config.success_events:
                    continue
                self._spawn(self._call(
                    self.api.post_event, body, action.type, action.reason, action.message
                ))
            elif isinstance(action, Requeue):
                self.schedule(key, action.after_s)
        if decision.actions and any(isinstance(a, PatchStatus) for a in decision.actions):
            state_after = self.taskruns.get(key, {}).get("status", {}).get("state")
            if state_after in {s.value for s in FINAL_STATES}:
                self._finished(key, TaskRunResource.from_object(self.taskruns[key]))


# -- kopf -----------------------------------------------------------------------------------------


class _NoDiffBase(kopf.DiffBaseStorage):
    """No "last handled" state: this operator has only ``@kopf.on.event`` handlers, which never
    look at diffs. kopf still builds each object's essence (a deep copy) on every event unless
    the storage says there is none - about a quarter of the operator's CPU at scale."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


class ForgetfulMemories(ResourceMemories):
    """kopf's per-object memory, kept for no object.

    kopf remembers every object it has seen (a memo, an error throttler, indexing and daemon
    records: ~2.8 KB each) until the object is deleted - finished TaskRuns and their pods are
    kept for good, so the operator's memory grew with every run. Those records serve daemons,
    timers, indexes, memos and changing-handler patches; this operator has only
    ``@kopf.on.event`` handlers, which keep their own state, so each event gets a fresh record
    that is dropped after it.
    """

    async def recall(self, raw_body: Any, *, memobase: Any = None,
                     noticed_by_listing: bool = False, ephemeral: bool = False) -> Any:
        return await super().recall(raw_body, memobase=memobase,
                                    noticed_by_listing=noticed_by_listing, ephemeral=True)


def log_counters() -> None:
    """Log the controller's counters as one JSON line (on SIGUSR1, and at shutdown)."""
    if _reconciler is not None:
        logger.info("flowpod counters: %s", json.dumps(_reconciler.counters(), sort_keys=True))


_reconciler: Reconciler | None = None
_flowruns: FlowRunController | None = None
_config: OperatorConfig = OperatorConfig()


def configure(config: OperatorConfig) -> None:
    """Set the configuration the operator starts with (``__main__`` calls this)."""
    global _config
    _config = config


def _current() -> Reconciler:
    if _reconciler is None:
        raise RuntimeError("the flowpod operator has not started")
    return _reconciler


def _flow_controller() -> FlowRunController:
    if _flowruns is None:
        raise RuntimeError("the flowpod operator has not started")
    return _flowruns


def tune(settings: kopf.OperatorSettings) -> None:
    """kopf's settings for this operator (the start-up handler applies them; the local
    benchmark too, to drive kopf's event processing the same way)."""
    # Only problems become Kubernetes events; routine handler logs stay in the operator's log.
    settings.posting.level = logging.WARNING
    settings.persistence.diffbase_storage = _NoDiffBase()
    # Per-object workers: unlimited (each is cheap), and gone soon after the object goes quiet,
    # so thousands of finished TaskRuns hold no worker. Each idle worker keeps its object's last
    # body: at 0.5 s a burst of 5,000 TaskRuns peaked at 136 MB RSS against 151 MB at 2 s, with
    # the same CPU per TaskRun and latency at 50/s (docs/benchmarks.md).
    settings.queueing.worker_limit = None
    settings.queueing.idle_timeout = 0.5
    # Reconnect watches promptly; the server ends each watch after a while anyway.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 0.5
    # Filter pods on the server: only the operator's own pods travel to this process.
    settings.watching.label_selectors["v1", "pods"] = f"{MANAGED_BY_LABEL}={MANAGED_BY}"
    # Dynamic CRD discovery needs a cluster-wide CRD watch (and RBAC): not needed here.
    settings.scanning.disabled = True
    settings.networking.request_timeout = 60


@kopf.on.startup()
async def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    global _reconciler, _flowruns
    tune(settings)
    _reconciler = Reconciler(
        _config, KubeApi(max_connections=_config.api_workers), StoreRegistry(_config),
        max_in_flight=_config.max_in_flight,
    )
    _flowruns = FlowRunController(_config, _reconciler.api, _reconciler.stores,
                                  _reconciler.executor, _reconciler.clock)
    # `kill -USR1 <pid>`: the counters (API requests by kind, watch events handled and skipped).
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, log_counters)
    # FLOWPOD_S3_CREATE_BUCKET: in a daemon thread that retries until the storage server is up,
    # so neither start-up nor the liveness endpoint waits for it.
    start_bucket_creator(_config)


@kopf.on.cleanup()
async def _cleanup(**_: Any) -> None:
    global _reconciler, _flowruns
    _flowruns = None
    log_counters()
    if _reconciler is not None:
        _reconciler.executor.shutdown(wait=False, cancel_futures=True)
        _reconciler.api.close()
        _reconciler = None


@kopf.on.event(GROUP, VERSION, "taskruns")
async def _on_taskrun(event: kopf.RawEvent, **_: Any) -> None:
    body: dict[str, Any] = dict(event["object"])
    _flow_controller().taskrun_seen(event.get("type"), body)
    await _current().taskrun_event(event.get("type"), body)


@kopf.on.event(GROUP, VERSION, "flowruns")
async def _on_flowrun(event: kopf.RawEvent, **_: Any) -> None:
    await _flow_controller().flowrun_event(event.get("type"), dict(event["object"]))


@kopf.on.event("v1", "pods", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def _on_pod(event: kopf.RawEvent, **_: Any) -> None:
    body: dict[str, Any] = dict(event["object"])
    if (body.get("metadata", {}).get("labels") or {}).get(ROLE_LABEL) == "flow":
        await _flow_controller().pod_event(event.get("type"), body)
        return
    await _current().pod_event(event.get("type"), body)
