"""What the runner writes for one submitted task run: its payload and its TaskRun manifest.

``prepare_taskrun`` computes the cache key where the task was called (``cache_key_fn`` is
Python), resolves retries and delays, builds the payload (``flowpod._kube.payloads``; the runner
writes it to the result store) and the TaskRun's name and manifest: spec from the task and the
runner's options, labels (runner, task, FlowRun) and, in a flow pod, an owner reference to its
FlowRun.

Names: outside a flow pod, the run's name and a random suffix. In a flow pod (``FlowPodRun``,
from the variables the pod program sets), the suffix is derived from the FlowRun, the series of
attempts the pod belongs to and the submission's place in the flow
(``flowpod._contract.resuming``), so a flow pod that resumes a lost one meets the TaskRuns that
one created under the names it would give them itself.
"""

from __future__ import annotations

import copy
import itertools
import os
import random
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import flowpod._engine.task_engine as _task_engine
from flowpod._contract.keys import payload_key
from flowpod._contract.labels import FLOWRUN_LABEL, RUNNER_LABEL, TASK_LABEL, label_value
from flowpod._contract.resuming import series_suffix
from flowpod._engine.caching import serializer_of
from flowpod._engine.retries import delays_of, retries_of

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec
    from flowpod._engine.task_engine import Submission
    from flowpod._kube.options import RunnerOptions
    from flowpod._kube.payloads import TaskPayload
    from flowpod._storage import ResultStore

__all__ = [
    "FLOWRUN_ATTEMPT_VAR",
    "FLOWRUN_NAME_VAR",
    "FLOWRUN_SERIES_VAR",
    "FLOWRUN_UID_VAR",
    "FlowPodRun",
    "PreparedTaskRun",
    "TaskRunTarget",
    "next_submission",
    "prepare_taskrun",
    "taskrun_object_name",
]

# Set in a flow pod by the pod program: TaskRuns created there belong to that FlowRun.
FLOWRUN_NAME_VAR = "FLOWPOD_FLOW_RUN_NAME"
FLOWRUN_UID_VAR = "FLOWPOD_FLOW_RUN_UID"
FLOWRUN_ATTEMPT_VAR = "FLOWPOD_FLOW_RUN_ATTEMPT"
FLOWRUN_SERIES_VAR = "FLOWPOD_FLOW_RUN_SERIES"

# The flow's submissions in order, counted across the process (one flow pod runs one FlowRun;
# its subflows' runners share the count, so their TaskRuns' names do not collide either).
_submissions = itertools.count()


def next_submission() -> int:
    """The next submission's place in this process's flow (called in the flow's own order)."""
    return next(_submissions)


@dataclass(frozen=True)
class FlowPodRun:
    """The FlowRun this process runs, as its flow pod: set by the pod program in its env."""

    name: str
    uid: str
    attempt: int = 1
    series: int = 1
    """The attempt whose work this one continues (itself, unless the one before was lost)."""

    @property
    def resuming(self) -> bool:
        """An earlier flow pod of this series may have created this pod's TaskRuns already."""
        return self.series < self.attempt

    @classmethod
    def current(cls) -> FlowPodRun | None:
        name = os.environ.get(FLOWRUN_NAME_VAR) or None
        uid = os.environ.get(FLOWRUN_UID_VAR) or None
        if name is None or uid is None:
            return None
        attempt = int(os.environ.get(FLOWRUN_ATTEMPT_VAR) or 1)
        series = int(os.environ.get(FLOWRUN_SERIES_VAR) or attempt)
        return cls(name, uid, attempt, series)

    def taskrun_name(self, run_name: str, sequence: int) -> str:
        """The name of submission ``sequence`` (run ``run_name``) in this series."""
        return f"{_base_name(run_name)}-{series_suffix(self.uid, self.series, sequence)}"


@dataclass(frozen=True)
class PreparedTaskRun:
    """A TaskRun ready to create: its name, its manifest and the payload to write first."""

    name: str
    namespace: str
    manifest: dict[str, Any] = field(repr=False)
    payload: TaskPayload = field(repr=False)

    @property
    def task_key(self) -> str:
        return str(self.manifest["spec"]["taskKey"])

    def renamed(self, name: str) -> PreparedTaskRun:
        """The same TaskRun under another name (and payload key)."""
        manifest = copy.deepcopy(self.manifest)
        manifest["metadata"]["name"] = name
        manifest["spec"]["payload"] = payload_key(self.namespace, name)
        return PreparedTaskRun(name, self.namespace, manifest, self.payload)

_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def taskrun_object_name(run_name: str, rng: random.Random | None = None) -> str:
    """A unique, valid object name for a task run named ``run_name`` (e.g. 'add-0-k3x9qz').

    Short (<= 47 characters) so that the operator's ``<taskrun>-<attempt>`` pod names stay
    readable within Kubernetes' 63-character limit.
    """
    base = _base_name(run_name)
    draw = rng or random
    suffix = "".join(draw.choice(_SUFFIX_ALPHABET) for _ in range(6))
    return f"{base}-{suffix}"


def _base_name(run_name: str) -> str:
    return _NAME_CHARS.sub("-", run_name.lower()).strip("-")[:40].strip("-") or "task"


class TaskRunTarget(Protocol):
    """What ``prepare_taskrun`` needs of the runner (``KubernetesTaskRunner`` fits)."""

    options: RunnerOptions
    runner_id: str

    def resolved_namespace(self) -> str: ...

    def result_store(self) -> ResultStore: ...

    def storage_spec(self) -> StorageSpec | None: ...


def prepare_taskrun(sub: Submission, params: dict[str, Any], target: TaskRunTarget,
                    flow_pod: FlowPodRun | None = None,
                    sequence: int | None = None) -> PreparedTaskRun:
    """The TaskRun of ``sub``: in a flow pod (``flow_pod``) named for its place ``sequence``
    in the flow, else with a random suffix."""
    from flowpod._contract.resources import TaskRunSpec
    from flowpod._kube.payloads import FlowRunInfo, TaskPayload

    task, task_run, flow_ctx = sub.task, sub.task_run, sub.flow_ctx
    log_prints = _task_engine.effective_log_prints(task, flow_ctx, sub.parent)
    if task.task_run_name is not None and not sub.named:
        _task_engine.apply_run_name(task, task_run, params)
    cache_key = _task_engine.compute_cache_key(task, task_run, params, flow_ctx, log_prints)
    task_run.cache_key = cache_key
    retries = retries_of(task)
    delays = delays_of(task, retries) if retries else []
    serializer = serializer_of(task)
    expiration = task.cache_expiration.total_seconds() if task.cache_expiration else None
    flow_info = None
    if flow_ctx is not None:
        flow_run = flow_ctx.flow_run
        flow_info = FlowRunInfo(
            id=str(flow_run.id), name=flow_run.name, flow_name=flow_run.flow_name,
            parameters=dict(flow_run.parameters), tags=list(flow_run.tags),
            persist_result=flow_ctx.persist_result,
            result_serializer=flow_ctx.flow.result_serializer,
        )
    payload = TaskPayload(
        task=task, parameters=params, run_name=task_run.name, task_run_id=str(task_run.id),
        tags=list(task_run.tags), log_prints=log_prints, flow_run=flow_info,
        parent_task_run_id=(str(task_run.parent_task_run_id)
                            if task_run.parent_task_run_id else None),
        cache_key=cache_key, cache_expiration_seconds=expiration,
        result_serializer=serializer, retries=retries,
    )
    namespace = target.resolved_namespace()
    if flow_pod is not None and sequence is not None:
        name = flow_pod.taskrun_name(task_run.name, sequence)
    else:
        name = taskrun_object_name(task_run.name)
    payload_ref = payload_key(namespace, name)
    options = target.options
    env: Any = options.env
    if isinstance(env, Mapping):
        env = [{"name": key, "value": value} for key, value in env.items()]
    flowrun_name = flow_pod.name if flow_pod is not None else None
    flowrun_uid = flow_pod.uid if flow_pod is not None else None
    spec = TaskRunSpec.model_validate({
        "taskName": task.name,
        "taskKey": task.task_key,
        "runName": task_run.name,
        "flowRun": flowrun_name,
        "cacheKey": cache_key,
        "cacheExpirationSeconds": expiration,
        "refreshCache": bool(task.refresh_cache),
        "payload": payload_ref,
        "timeoutSeconds": task.timeout_seconds or None,
        "retries": retries,
        "retryDelaySeconds": delays,
        "retryJitterFactor": task.retry_jitter_factor,
        "storage": target.storage_spec(),
        "image": options.image,
        "imagePullPolicy": options.image_pull_policy,
        "serviceAccountName": options.service_account_name,
        "resources": dict(options.resources) if options.resources else None,
        "env": list(env) if env else None,
        "nodeSelector": dict(options.node_selector) if options.node_selector else None,
        "tolerations": [dict(t) for t in options.tolerations] if options.tolerations else None,
        "pendingTimeoutSeconds": options.pending_timeout_seconds,
        "oomMemoryRaise": options.oom_memory_raise(),
    })
    labels = {RUNNER_LABEL: target.runner_id, TASK_LABEL: label_value(task.name)}
    owners = None
    if flowrun_name and flowrun_uid:
        from flowpod._contract.resources import API_VERSION

        labels[FLOWRUN_LABEL] = label_value(flowrun_name)
        owners = [{"apiVersion": API_VERSION, "kind": "FlowRun", "name": flowrun_name,
                   "uid": flowrun_uid, "controller": False, "blockOwnerDeletion": True}]
    manifest = spec.to_manifest(name, namespace, labels=labels, owner_references=owners)
    return PreparedTaskRun(name, namespace, manifest, payload)
