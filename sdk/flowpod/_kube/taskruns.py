"""What the runner writes for one submitted task run: its payload and its TaskRun manifest.

``prepare_taskrun`` computes the cache key where the task was called (``cache_key_fn`` is
Python), resolves retries and delays, writes the payload (``flowpod._kube.payloads``) to the
result store and returns the TaskRun's name and manifest: spec from the task and the runner's
options, labels (runner, task, FlowRun) and, in a flow pod, an owner reference to its FlowRun.
"""

from __future__ import annotations

import os
import random
import re
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import flowpod._engine.task_engine as _task_engine
from flowpod._contract.labels import FLOWRUN_LABEL, RUNNER_LABEL, TASK_LABEL, label_value
from flowpod._engine.caching import serializer_of
from flowpod._engine.retries import delays_of, retries_of

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec
    from flowpod._engine.task_engine import Submission
    from flowpod._kube.options import RunnerOptions
    from flowpod._storage import ResultStore

__all__ = [
    "FLOWRUN_NAME_VAR",
    "FLOWRUN_UID_VAR",
    "TaskRunTarget",
    "prepare_taskrun",
    "taskrun_object_name",
]

# Set in a flow-runner pod by the operator: TaskRuns created there belong to that FlowRun.
FLOWRUN_NAME_VAR = "FLOWPOD_FLOW_RUN_NAME"
FLOWRUN_UID_VAR = "FLOWPOD_FLOW_RUN_UID"

_NAME_CHARS = re.compile(r"[^a-z0-9-]+")
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def taskrun_object_name(run_name: str, rng: random.Random | None = None) -> str:
    """A unique, valid object name for a task run named ``run_name`` (e.g. 'add-0-k3x9qz').

    Short (<= 47 characters) so that the operator's ``<taskrun>-<attempt>`` pod names stay
    readable within Kubernetes' 63-character limit.
    """
    base = _NAME_CHARS.sub("-", run_name.lower()).strip("-")[:40].strip("-") or "task"
    draw = rng or random
    suffix = "".join(draw.choice(_SUFFIX_ALPHABET) for _ in range(6))
    return f"{base}-{suffix}"


class TaskRunTarget(Protocol):
    """What ``prepare_taskrun`` needs of the runner (``KubernetesTaskRunner`` fits)."""

    options: RunnerOptions
    runner_id: str

    def resolved_namespace(self) -> str: ...

    def result_store(self) -> ResultStore: ...

    def storage_spec(self) -> StorageSpec | None: ...


def prepare_taskrun(sub: Submission, params: dict[str, Any],
                    target: TaskRunTarget) -> tuple[str, dict[str, Any]]:
    """Write the payload of ``sub`` and return its TaskRun's (name, manifest)."""
    from flowpod._contract.resources import TaskRunSpec
    from flowpod._kube.payloads import FlowRunInfo, TaskPayload, write_payload

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
    name = taskrun_object_name(task_run.name)
    payload_ref = write_payload(target.result_store(), namespace, name, payload)
    options = target.options
    env: Any = options.env
    if isinstance(env, Mapping):
        env = [{"name": key, "value": value} for key, value in env.items()]
    flowrun_name = os.environ.get(FLOWRUN_NAME_VAR) or None
    flowrun_uid = os.environ.get(FLOWRUN_UID_VAR) or None
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
    return name, spec.to_manifest(name, namespace, labels=labels, owner_references=owners)
