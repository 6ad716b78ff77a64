"""The operator's own configuration: defaults for pods and storage, and what it watches.

Read once at start-up from the environment (the command line overrides some of it). Everything a
TaskRun's or FlowRun's spec leaves unset falls back to these values; a spec value always wins.

Storage (the default for runs without ``spec.storage``):

``FLOWPOD_S3_BUCKET``
    S3 bucket; empty: every run must name one.
``FLOWPOD_S3_PREFIX``
    Key prefix inside the bucket.
``FLOWPOD_S3_ENDPOINT``
    S3 endpoint URL (MinIO, Ceph, ...); AWS when unset.
``FLOWPOD_S3_REGION``
    S3 region.
``FLOWPOD_S3_CREATE_BUCKET``
    ``1``/``true``/``yes``: create the bucket at start-up when it does not exist (in the
    background, retried until it works); ``0``/``false``/``no``/unset: never.
``FLOWPOD_OPERATOR_CREDENTIALS_SECRET``
    Secret in the run's namespace the pods read ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` from (default ``flowpod-s3``; empty: the pods' own AWS chain).

Pods:

``FLOWPOD_OPERATOR_IMAGE``
    Image of pods whose run names none.
``FLOWPOD_OPERATOR_RUN_AS_USER``
    The uid task and flow pods run as: a whole number >= 1 (pods run as non-root); default 1000.
``FLOWPOD_OPERATOR_POD_DEFAULTS``
    A JSON object with any of ``imagePullPolicy`` (``Always``/``IfNotPresent``/``Never``),
    ``resources`` (``{"requests": {...}, "limits": {...}}``), ``nodeSelector`` (``{str: str}``)
    and ``tolerations`` (a list of Kubernetes tolerations): the value of that field for task and
    flow pods whose spec leaves it unset. A spec's value replaces the default whole (no merge).
``FLOWPOD_OPERATOR_FLOW_SERVICE_ACCOUNT``
    ServiceAccount of flow pods whose FlowRun names none (default ``flowpod-flow-runner``).
``FLOWPOD_OPERATOR_TASK_SERVICE_ACCOUNT``
    ServiceAccount of task pods whose TaskRun names none, mounted without a token (task pods
    never call the API; the account is there for identity, e.g. IRSA for S3). Empty (default):
    the namespace's default account, without a token.
``FLOWPOD_OPERATOR_TTL_SECONDS``
    Default ``ttlSecondsAfterFinished`` of FlowRuns (whole seconds >= 0); unset keeps them.
``FLOWPOD_OPERATOR_PENDING_TIMEOUT_SECONDS``
    How long an attempt may take to start - pod creation, scheduling, image pull - before it
    ends Crashed with the reason it could not (whole seconds >= 0, default 300; 0 turns the
    deadline off). A run's ``spec.pendingTimeoutSeconds`` wins. Problems that waiting cannot fix
    (a missing ServiceAccount or Secret, a forbidden or invalid pod) end the attempt at once.
``FLOWPOD_OPERATOR_INFRASTRUCTURE_RETRIES``
    Attempts the operator adds, beyond a run's own retries, after a platform failure - its pod
    deleted, evicted or lost with its node, or ended without an outcome because the store was
    down (whole number >= 0, default 3; after 2, 10 and 30 s).
``FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS``
    Added to a run's timeout to make its pod's ``activeDeadlineSeconds`` (whole seconds >= 0,
    default 30). The pod stops an overrunning task itself, at its timeout; the kubelet's deadline
    is the backstop for code that cannot be stopped, and it counts from when the kubelet took the
    pod, image pull and start-up included.

The operator process:

``FLOWPOD_OPERATOR_NAMESPACES``
    Namespaces to watch, comma-separated; empty: all.
``FLOWPOD_OPERATOR_SUCCESS_EVENTS``
    ``1``/``true``/``yes``: post Normal events for Completed/Cached too.
``FLOWPOD_OPERATOR_API_WORKERS``
    Threads making Kubernetes and S3 calls (whole number >= 1, default 16).

A malformed value is a ``ValueError`` naming the variable (the CLI shows it as a usage error).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from flowpod._contract.pod_settings import ImagePullPolicy, ResourceRequirements
from flowpod._storage.config import StorageConfig

__all__ = [
    "DEFAULT_CREDENTIALS_SECRET",
    "DEFAULT_FLOW_SERVICE_ACCOUNT",
    "DEFAULT_IMAGE",
    "DEFAULT_RUN_AS_USER",
    "OperatorConfig",
    "PodDefaults",
    "StorageDefaults",
]

DEFAULT_IMAGE = "ghcr.io/flowpod/flowpod:latest"
DEFAULT_CREDENTIALS_SECRET = "flowpod-s3"
DEFAULT_FLOW_SERVICE_ACCOUNT = "flowpod-flow-runner"
DEFAULT_RUN_AS_USER = 1000
DEFAULT_DEADLINE_ALLOWANCE_SECONDS = 30
DEFAULT_PENDING_TIMEOUT_SECONDS = 300
DEFAULT_INFRASTRUCTURE_RETRIES = 3
DEFAULT_RUNNING_REPORT_DELAY_SECONDS = 2
# Kubernetes validates runAsUser as a 32-bit signed value.
_MAX_UID = 2**31 - 1
_TRUE, _FALSE = ("1", "true", "yes"), ("", "0", "false", "no")
_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


class PodDefaults(BaseModel):
    """Defaults for pod fields a run's spec leaves unset (``FLOWPOD_OPERATOR_POD_DEFAULTS``).

    The fields and their types are those of the same fields of a TaskRun/FlowRun spec, so a
    default is exactly what a spec could have said; keys are camelCase as in a spec.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    image_pull_policy: ImagePullPolicy | None = None
    resources: ResourceRequirements | None = None
    node_selector: dict[str, str] | None = None
    tolerations: Annotated[list[dict[str, Any]], Field(max_length=64)] | None = None

    @classmethod
    def from_json(cls, text: str, *, source: str = "FLOWPOD_OPERATOR_POD_DEFAULTS") -> PodDefaults:
        """Parse the JSON object ``text``; ValueError naming ``source`` and what is wrong."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"{source} must be a JSON object like {{\"imagePullPolicy\": \"IfNotPresent\"}}, "
                f"got a JSON {_JSON_TYPES.get(type(data), type(data).__name__)}"
            )
        allowed = [str(info.alias) for info in cls.model_fields.values()]
        unknown = sorted(str(key) for key in data if key not in allowed)
        if unknown:
            raise ValueError(
                f"{source} has unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                f"{', '.join(allowed)}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
                for error in exc.errors()
            )
            raise ValueError(f"{source} is invalid: {problems}") from None


@dataclass(frozen=True)
class StorageDefaults:
    """Where payloads and results live when a TaskRun has no ``spec.storage``."""

    bucket: str = ""
    """S3 bucket (``FLOWPOD_S3_BUCKET``); empty means every TaskRun must name one."""
    prefix: str = ""
    """Key prefix inside the bucket (``FLOWPOD_S3_PREFIX``)."""
    endpoint: str | None = None
    """S3 endpoint URL (``FLOWPOD_S3_ENDPOINT``); AWS when unset."""
    region: str | None = None
    """S3 region (``FLOWPOD_S3_REGION``)."""
    credentials_secret: str | None = DEFAULT_CREDENTIALS_SECRET
    """Secret (in the TaskRun's namespace) the pods read S3 credentials from, when the spec
    names none (``FLOWPOD_OPERATOR_CREDENTIALS_SECRET``; empty: pods use their own chain)."""
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    """Key in that Secret holding the access key id."""
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    """Key in that Secret holding the secret access key."""
    create_bucket: bool = False
    """Create ``bucket`` at start-up when it does not exist (``FLOWPOD_S3_CREATE_BUCKET``), e.g.
    for a development MinIO; with the operator's own credentials."""

    @property
    def location(self) -> StorageConfig:
        """The default storage location, in the one form the code passes around."""
        return StorageConfig(self.bucket, self.prefix, self.endpoint, self.region)


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator process."""

    default_image: str = DEFAULT_IMAGE
    """Image of task pods whose TaskRun names none (``FLOWPOD_OPERATOR_IMAGE``)."""
    storage: StorageDefaults = field(default_factory=StorageDefaults)
    """Storage used when a TaskRun has no ``spec.storage``."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (``FLOWPOD_OPERATOR_NAMESPACES``, comma-separated); empty: all."""
    run_as_user: int = DEFAULT_RUN_AS_USER
    """The non-root uid task and flow pods run as (``FLOWPOD_OPERATOR_RUN_AS_USER``)."""
    pod_defaults: PodDefaults = field(default_factory=PodDefaults)
    """Pull policy, resources, node selector and tolerations of task and flow pods whose spec
    leaves them unset (``FLOWPOD_OPERATOR_POD_DEFAULTS``); empty: Kubernetes' own defaults."""
    success_events: bool = False
    """Post Normal events for Completed/Cached too (``FLOWPOD_OPERATOR_SUCCESS_EVENTS=1``).
    Off by default: one more API write per TaskRun for a transition the status already shows;
    Warning events (failures, retries, crashes, timeouts) are always posted."""
    api_workers: int = 16
    """Threads making Kubernetes and S3 calls (both clients are synchronous)."""
    max_in_flight: int = 32
    """TaskRun reconciles running at once (``FLOWPOD_OPERATOR_MAX_IN_FLIGHT``); the rest wait
    in a queue of names, where repeated events for one run coalesce. A few per API thread
    keep the threads busy without piling up suspended handlers on two cores."""
    running_report_delay_seconds: int = DEFAULT_RUNNING_REPORT_DELAY_SECONDS
    """How long a pod must have been running before its run's Running state is written on its
    own (``FLOWPOD_OPERATOR_RUNNING_REPORT_DELAY_SECONDS``; 0: at once). A task that ends
    sooner gets Running and its final state in one status patch (both in ``status.history``,
    each with its own time): one API write less per short task."""
    task_service_account: str = ""
    """ServiceAccount of task pods whose TaskRun names none, without a token
    (``FLOWPOD_OPERATOR_TASK_SERVICE_ACCOUNT``); empty: the namespace's default account."""
    flow_service_account: str = DEFAULT_FLOW_SERVICE_ACCOUNT
    """ServiceAccount of flow pods whose FlowRun names none
    (``FLOWPOD_OPERATOR_FLOW_SERVICE_ACCOUNT``); the Helm chart creates it (flowRunner)."""
    ttl_seconds: int | None = None
    """Default ``ttlSecondsAfterFinished`` of FlowRuns (``FLOWPOD_OPERATOR_TTL_SECONDS``);
    None keeps finished FlowRuns."""
    pending_timeout_seconds: int | None = DEFAULT_PENDING_TIMEOUT_SECONDS
    """How long an attempt may take to start before it ends Crashed (PendingTimeout), unless its
    run's ``spec.pendingTimeoutSeconds`` says otherwise
    (``FLOWPOD_OPERATOR_PENDING_TIMEOUT_SECONDS``; 0 or None: no deadline)."""
    infrastructure_retries: int = DEFAULT_INFRASTRUCTURE_RETRIES
    """Attempts beyond a run's own retries after a platform failure
    (``FLOWPOD_OPERATOR_INFRASTRUCTURE_RETRIES``)."""
    deadline_allowance_seconds: int = DEFAULT_DEADLINE_ALLOWANCE_SECONDS
    """Seconds added to a run's timeout for its pod's ``activeDeadlineSeconds``
    (``FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS``): the deadline is a backstop behind the
    timeout the pod enforces itself, and it also counts image pull and start-up."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """The configuration the environment describes (unset variables keep the defaults)."""
        env = os.environ if environ is None else environ
        secret = env.get("FLOWPOD_OPERATOR_CREDENTIALS_SECRET", DEFAULT_CREDENTIALS_SECRET)
        bucket = env.get("FLOWPOD_S3_BUCKET", "").strip()
        create_bucket = _flag(env, "FLOWPOD_S3_CREATE_BUCKET")
        if create_bucket and not bucket:
            raise ValueError(
                "FLOWPOD_S3_CREATE_BUCKET is set but FLOWPOD_S3_BUCKET is not: name the bucket "
                "to create"
            )
        location = StorageConfig.from_env(env) or StorageConfig("")
        storage = StorageDefaults(
            bucket=location.bucket,
            prefix=location.prefix,
            endpoint=location.endpoint,
            region=location.region,
            credentials_secret=secret.strip() or None,
            create_bucket=create_bucket,
        )
        namespaces = tuple(
            item.strip() for item in env.get("FLOWPOD_OPERATOR_NAMESPACES", "").split(",")
            if item.strip()
        )
        workers_text = env.get("FLOWPOD_OPERATOR_API_WORKERS", "16")
        try:
            workers = int(workers_text)
        except ValueError:
            raise ValueError(
                f"FLOWPOD_OPERATOR_API_WORKERS must be a whole number, got {workers_text!r}"
            ) from None
        if workers < 1:
            raise ValueError(f"FLOWPOD_OPERATOR_API_WORKERS must be >= 1, got {workers}")
        ttl = _seconds(env, "FLOWPOD_OPERATOR_TTL_SECONDS")
        allowance = _seconds(env, "FLOWPOD_OPERATOR_DEADLINE_ALLOWANCE_SECONDS")
        pending = _seconds(env, "FLOWPOD_OPERATOR_PENDING_TIMEOUT_SECONDS")
        running_delay = _seconds(env, "FLOWPOD_OPERATOR_RUNNING_REPORT_DELAY_SECONDS")
        in_flight = _seconds(env, "FLOWPOD_OPERATOR_MAX_IN_FLIGHT")
        # A count, not seconds, but the same rule: a whole number >= 0, unset keeps the default.
        infra = _seconds(env, "FLOWPOD_OPERATOR_INFRASTRUCTURE_RETRIES")
        defaults_text = env.get("FLOWPOD_OPERATOR_POD_DEFAULTS", "").strip()
        return cls(
            task_service_account=env.get("FLOWPOD_OPERATOR_TASK_SERVICE_ACCOUNT", "").strip(),
            flow_service_account=(env.get("FLOWPOD_OPERATOR_FLOW_SERVICE_ACCOUNT", "").strip()
                                  or DEFAULT_FLOW_SERVICE_ACCOUNT),
            ttl_seconds=ttl,
            deadline_allowance_seconds=(DEFAULT_DEADLINE_ALLOWANCE_SECONDS if allowance is None
                                        else allowance),
            pending_timeout_seconds=(DEFAULT_PENDING_TIMEOUT_SECONDS if pending is None
                                     else pending or None),
            infrastructure_retries=(DEFAULT_INFRASTRUCTURE_RETRIES if infra is None else infra),
            default_image=env.get("FLOWPOD_OPERATOR_IMAGE", "").strip() or DEFAULT_IMAGE,
            storage=storage,
            namespaces=namespaces,
            run_as_user=_run_as_user(env.get("FLOWPOD_OPERATOR_RUN_AS_USER", "").strip()),
            pod_defaults=PodDefaults.from_json(defaults_text) if defaults_text else PodDefaults(),
            success_events=env.get("FLOWPOD_OPERATOR_SUCCESS_EVENTS", "0") in ("1", "true", "yes"),
            api_workers=workers,
            running_report_delay_seconds=(DEFAULT_RUNNING_REPORT_DELAY_SECONDS
                                          if running_delay is None else running_delay),
            max_in_flight=max(in_flight, 1) if in_flight is not None else 32,
        )


def _seconds(env: Mapping[str, str], name: str) -> int | None:
    """A whole number of seconds >= 0 from ``name``; None when it is unset or empty."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of seconds, got {text!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be one of 1, true, yes, 0, false, no; got {env[name]!r}")


def _run_as_user(text: str) -> int:
    if not text:
        return DEFAULT_RUN_AS_USER
    try:
        uid = int(text)
    except ValueError:
        raise ValueError(
            f"FLOWPOD_OPERATOR_RUN_AS_USER must be a whole number (a uid), got {text!r}"
        ) from None
    if uid < 1:
        raise ValueError(
            f"FLOWPOD_OPERATOR_RUN_AS_USER must be >= 1, got {uid}: task and flow pods must run "
            "as non-root (uid 0 is root)"
        )
    if uid > _MAX_UID:
        raise ValueError(f"FLOWPOD_OPERATOR_RUN_AS_USER must be <= {_MAX_UID}, got {uid}")
    return uid
