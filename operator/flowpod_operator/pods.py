"""The pod that runs one attempt of a TaskRun, as a plain manifest (pure: no API calls).

The name is a function of the TaskRun's name and the attempt number alone, so whoever computes
it - this process, a restarted operator, a test - gets the same name, and creating it twice is
an adoption (409), not a second pod. Labels select the operator's pods in its watch; the owner
reference lets Kubernetes garbage-collect the pods with their TaskRun.

The pod needs no Kubernetes API access: what to run comes from its arguments, where the data
lives from its environment, and the credentials from a Secret by reference (never inline). It runs
hardened as the chart runs the operator: non-root, a read-only root filesystem with an emptyDir
at ``/tmp`` (``FLOWPOD_HOME`` points there), no capabilities, the runtime's seccomp profile.
Its ``activeDeadlineSeconds`` is the run's timeout plus ``deadline_allowance_seconds``: the pod
stops an overrunning task itself, and the kubelet's deadline, which also counts image pull and
start-up, is the backstop.
Pull policy, resources, node selector and tolerations come from the run's spec, else from the
operator's pod defaults (``OperatorConfig.pod_defaults``); the uid from ``run_as_user``.
"""

from __future__ import annotations

import math
from typing import Any, TypeVar

from flowpod._contract.labels import (
    ATTEMPT_LABEL,
    FLOWRUN_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    ROLE_LABEL,
    TASKRUN_LABEL,
    attempt_pod_name,
    flow_pod_name,
    label_value,
)
from flowpod._contract.resources import API_VERSION, FlowRunResource, TaskRunResource
from flowpod._storage.config import StorageConfig
from flowpod_operator.memory import parse_memory
from flowpod_operator.settings import OperatorConfig

__all__ = [
    "ATTEMPT_LABEL",
    "CONTAINER_NAME",
    "FLOWRUN_LABEL",
    "FLOW_CONTAINER_NAME",
    "ROLE_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "TASKRUN_LABEL",
    "active_deadline_seconds",
    "flow_pod_manifest",
    "flow_pod_name",
    "label_value",
    "pod_manifest",
    "pod_name",
]

CONTAINER_NAME = "task"
FLOW_CONTAINER_NAME = "flow"
# The only writable place in a pod: task code's temporary files and flowpod's own home.
TMP_VOLUME, TMP_PATH = "tmp", "/tmp"
POD_FLOWPOD_HOME = "/tmp/flowpod"

_T = TypeVar("_T")


def pod_name(taskrun: str, attempt: int) -> str:
    """The pod of ``attempt`` of ``taskrun`` (``flowpod._contract.labels.attempt_pod_name``)."""
    return attempt_pod_name(taskrun, attempt)


def _storage_env(
    taskrun: TaskRunResource | FlowRunResource, config: OperatorConfig
) -> list[dict[str, Any]]:
    storage = taskrun.spec.storage
    defaults = config.storage
    location = StorageConfig.from_spec(storage) if storage is not None else defaults.location
    secret = storage.credentials_secret if storage is not None else None
    if secret is not None:
        secret_name: str | None = secret.name
        id_key, key_key = secret.access_key_id_key, secret.secret_access_key_key
    else:
        secret_name = defaults.credentials_secret
        id_key, key_key = defaults.access_key_id_key, defaults.secret_access_key_key
    env: list[dict[str, Any]] = [
        {"name": name, "value": value} for name, value in location.to_env().items()
    ]
    if secret_name:
        for name, key in (("AWS_ACCESS_KEY_ID", id_key), ("AWS_SECRET_ACCESS_KEY", key_key)):
            env.append(
                {"name": name, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
            )
    return env


def active_deadline_seconds(timeout_seconds: float, config: OperatorConfig) -> int:
    """The kubelet's deadline for the pod of a run with this timeout."""
    return max(1, math.ceil(timeout_seconds)) + config.deadline_allowance_seconds


def _first(value: _T | None, default: _T | None) -> _T | None:
    return value if value is not None else default


def _pod(run: TaskRunResource | FlowRunResource, *, kind: str, command: str,
         container_name: str, name: str, attempt: int, labels: dict[str, str],
         config: OperatorConfig) -> dict[str, Any]:
    """The pod of one attempt of a TaskRun or FlowRun: what both kinds of pod have in common."""
    meta, spec = run.metadata, run.spec
    if not meta.name or not meta.namespace or not meta.uid:
        raise ValueError(f"a {kind} needs metadata.name, namespace and uid to own a pod")
    env = [{"name": "FLOWPOD_HOME", "value": POD_FLOWPOD_HOME}, *_storage_env(run, config)]
    # The spec's own variables come last: the pod sees them over the defaults above.
    overridden = {item.name for item in spec.env or ()}
    env = [item for item in env if item["name"] not in overridden]
    env.extend(item.to_wire() for item in spec.env or ())
    container: dict[str, Any] = {
        "name": container_name,
        "image": spec.image or config.default_image,
        "command": [
            "python", "-m", "flowpod.pod", command, f"{meta.namespace}/{meta.name}",
            "--attempt", str(attempt),
        ],
        "env": env,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_PATH}],
    }
    # The operator's pod defaults fill what the spec leaves unset (None); a value the spec sets,
    # even an empty one, replaces the default whole.
    defaults = config.pod_defaults
    pull_policy = _first(spec.image_pull_policy, defaults.image_pull_policy)
    resources = _first(spec.resources, defaults.resources)
    node_selector = _first(spec.node_selector, defaults.node_selector)
    tolerations = _first(spec.tolerations, defaults.tolerations)
    if pull_policy is not None:
        container["imagePullPolicy"] = pull_policy.value
    if resources is not None:
        container["resources"] = resources.to_wire()
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": config.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    if spec.timeout_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = active_deadline_seconds(spec.timeout_seconds, config)
    if node_selector:
        pod_spec["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod_spec["tolerations"] = [dict(item) for item in tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": meta.namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": kind,
                    "name": meta.name,
                    "uid": meta.uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": pod_spec,
    }


def pod_manifest(taskrun: TaskRunResource, attempt: int, config: OperatorConfig) -> dict[str, Any]:
    """The pod running ``attempt`` of ``taskrun``."""
    name, flow_run = taskrun.metadata.name or "", taskrun.spec.flow_run
    pod = _pod(
        taskrun, kind="TaskRun", command="task", container_name=CONTAINER_NAME,
        name=pod_name(name, attempt) if name else "", attempt=attempt, config=config,
        labels={
            TASKRUN_LABEL: label_value(name),
            ATTEMPT_LABEL: str(attempt),
            FLOWRUN_LABEL: label_value(flow_run) if flow_run else "",
            MANAGED_BY_LABEL: MANAGED_BY,
        },
    )
    raised = taskrun.status.memory_limit
    if raised is not None:
        _raise_memory(pod["spec"]["containers"][0], str(raised))
    if taskrun.spec.service_account_name:
        pod["spec"]["serviceAccountName"] = taskrun.spec.service_account_name
    else:
        # Task pods talk to the store, never to the API server: no token unless asked for. The
        # default account, when set, gives them an identity (IRSA for S3) and nothing else.
        if config.task_service_account:
            pod["spec"]["serviceAccountName"] = config.task_service_account
        pod["spec"]["automountServiceAccountToken"] = False
    return pod


def _raise_memory(container: dict[str, Any], limit: str) -> None:
    """The memory limit an earlier OOMKill raised (``status.memoryLimit``); a request above
    it would make the pod invalid, so it comes down to the limit."""
    resources = container.setdefault("resources", {})
    resources.setdefault("limits", {})["memory"] = limit
    request = (resources.get("requests") or {}).get("memory")
    if request is not None and parse_memory(request) > parse_memory(limit):
        resources["requests"]["memory"] = limit


def flow_pod_manifest(
    flowrun: FlowRunResource, attempt: int, config: OperatorConfig
) -> dict[str, Any]:
    """The flow-runner pod of ``attempt`` of ``flowrun``.

    Unlike task pods it talks to the API server (it reads its FlowRun and creates TaskRuns), so it
    runs as a ServiceAccount: the spec's, else the operator's default flow-runner account.
    """
    name = flowrun.metadata.name or ""
    pod = _pod(
        flowrun, kind="FlowRun", command="flow", container_name=FLOW_CONTAINER_NAME,
        name=flow_pod_name(name, attempt) if name else "", attempt=attempt, config=config,
        labels={
            FLOWRUN_LABEL: label_value(name),
            ROLE_LABEL: "flow",
            ATTEMPT_LABEL: str(attempt),
            MANAGED_BY_LABEL: MANAGED_BY,
        },
    )
    pod["spec"]["serviceAccountName"] = (
        flowrun.spec.service_account_name or config.flow_service_account
    )
    return pod
