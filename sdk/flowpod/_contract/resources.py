"""The flowpod custom resources (``TaskRun``, ``FlowRun``) as pydantic models.

One source of truth for three readers: the SDK builds manifests from these models, the operator
parses watched objects with them, and ``flowpod._cli.crds`` turns their JSON schema into the CRD
YAML in ``crds/``. Field names are snake_case in Python and camelCase on the wire (aliases), and
every spec model forbids unknown fields. What a spec says about its pods (image, env, resources,
storage) is in ``pod_settings``; the status builders the operator uses are in ``status``.

This module imports pydantic, so only the operator, the Kubernetes task runner and the CRD
generator import it; ``import flowpod`` never does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from flowpod._contract.pod_settings import (
    _DNS_SUBDOMAIN,
    _ENTRYPOINT,
    DnsName,
    NonNegativeInt,
    OomMemoryRaise,
    PositiveSeconds,
    Quantity,
    ResourceRequirements,
    Seconds,
    StorageSpec,
    _Model,
    _PodSettings,
    _Status,
)
from flowpod._contract.retrying import MAX_RETRY_DELAYS
from flowpod._contract.states import StateName, StateType

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "FlowRunResource",
    "FlowRunSpec",
    "FlowRunStatus",
    "ObjectMeta",
    "StateTransition",
    "TaskDefaults",
    "TaskRunResource",
    "TaskRunCounts",
    "TaskRunSpec",
    "TaskRunStatus",
    "from_object",
]

GROUP: Final = "flowpod.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "flowpod.dev/v1alpha1"


class StateTransition(_Status):
    """One entry of a run's history: the state entered, when, and why."""

    state: StateName
    type: StateType
    timestamp: datetime
    message: str | None = None
    reason: str | None = Field(
        default=None, description="Why, as one CamelCase word (e.g. OOMKilled, PendingTimeout)."
    )
    attempt: NonNegativeInt = 0


class ObjectMeta(BaseModel):
    """The parts of Kubernetes object metadata flowpod reads; everything else is kept as is."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    creation_timestamp: datetime | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[dict[str, Any]] | None = None


# -- TaskRun ------------------------------------------------------------------------------------


class _RunSpec(_PodSettings):
    """What a TaskRun's and a FlowRun's spec share beyond pod settings: how long an attempt may
    take to start, what an OOMKill changes, and making the object."""

    kind: ClassVar[str]

    pending_timeout_seconds: PositiveSeconds | None = Field(
        default=None,
        description=(
            "How long an attempt may wait to start (pod creation, scheduling, image pull) before "
            "it ends Crashed with the reason it could not; the operator's default when unset."
        ),
    )
    oom_memory_raise: OomMemoryRaise | None = Field(
        default=None,
        description="After an OOMKilled attempt, raise the next attempt's memory limit.",
    )

    def to_manifest(
        self,
        name: str,
        namespace: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        owner_references: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """The object of this spec, ready for the API server's create call."""
        return _manifest(self.kind, self, name, namespace, labels, annotations, owner_references)


class TaskRunSpec(_RunSpec):
    """One task run (all its attempts): what to run, how to retry it, where its data lives."""

    kind: ClassVar[str] = "TaskRun"

    task_name: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="The task's name (@task(name=...) or the function name)."
    )
    task_key: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Identifies the task definition (name, function, tags)."
    )
    run_name: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="The task run's display name, e.g. 'add-0'."
    )
    flow_run: DnsName | None = Field(default=None, description="Name of the owning FlowRun.")
    cache_key: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Computed where the task was called; no cache lookup if unset."
    )
    cache_expiration_seconds: Seconds | None = Field(
        default=None, description="How long a cached result stays valid; forever if unset."
    )
    refresh_cache: bool = Field(
        default=False, description="Run even when a cached result exists, then replace it."
    )
    payload: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description="Result-store key of the cloudpickled function and arguments."
    )
    timeout_seconds: PositiveSeconds | None = Field(
        default=None, description="Per-attempt limit, enforced as the pod's activeDeadlineSeconds."
    )
    retries: NonNegativeInt = Field(default=0, description="Retries after a failed attempt.")
    retry_delay_seconds: Annotated[list[Seconds], Field(max_length=MAX_RETRY_DELAYS)] = Field(
        default_factory=list,
        description="Base delay before each retry; the last one repeats for further retries.",
    )
    retry_jitter_factor: Seconds | None = Field(
        default=None, description="Random spread of each delay: 0.5 lets 10 s become up to 15 s."
    )
    storage: StorageSpec | None = None


class TaskRunStatus(_Status):
    """What the operator observed and decided about a task run."""

    state: StateName | None = None
    state_type: StateType | None = None
    history: list[StateTransition] = Field(default_factory=list)
    attempt: NonNegativeInt = Field(default=0, description="The current attempt, from 1.")
    pod: str | None = Field(default=None, description="The current attempt's pod.")
    next_retry_at: datetime | None = Field(
        default=None, description="When the next attempt starts (state AwaitingRetry)."
    )
    result_ref: str | None = Field(
        default=None, description="Result-store key of the result, once Completed."
    )
    message: str | None = None
    reason: str | None = Field(
        default=None,
        description=(
            "Why the run is in its state, or cannot progress, as one CamelCase word "
            "(e.g. ServiceAccountNotFound, Unschedulable, OOMKilled, PendingTimeout)."
        ),
    )
    memory_limit: Quantity | None = Field(
        default=None, description="The current attempt's memory limit, once raised after OOMKills."
    )
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: str | None = Field(
        default=None, description="Human-readable run time, e.g. '1m3s' (printer column)."
    )
    observed_generation: NonNegativeInt | None = None


# -- FlowRun ------------------------------------------------------------------------------------


class TaskDefaults(_Model):
    """Defaults for the pods of the flow's submitted tasks."""

    image: Annotated[str, Field(min_length=1)] | None = None
    resources: ResourceRequirements | None = None


class FlowRunSpec(_RunSpec):
    """One flow run: what to run (an entrypoint or stored code), its parameters and settings."""

    kind: ClassVar[str] = "FlowRun"

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.entrypoint) != has(self.code)",
                    "message": "exactly one of spec.entrypoint and spec.code must be set",
                }
            ]
        }
    )

    entrypoint: Annotated[str, Field(max_length=1024, pattern=_ENTRYPOINT)] | None = Field(
        default=None, description="'pkg.module:flow_function', importable in the image."
    )
    code: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, description="Result-store key of the cloudpickled flow, written by the SDK."
    )
    flow_name: Annotated[str, Field(min_length=1, max_length=1024)] | None = Field(
        default=None, description="The flow's name, for display (set by `flowpod submit`)."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The flow's parameters (any JSON values)."
    )
    task_defaults: TaskDefaults | None = None
    storage: StorageSpec | None = None
    retries: NonNegativeInt = 0
    retry_delay_seconds: Annotated[list[Seconds], Field(max_length=MAX_RETRY_DELAYS)] = Field(
        default_factory=list
    )
    timeout_seconds: PositiveSeconds | None = None
    ttl_seconds_after_finished: NonNegativeInt | None = Field(
        default=None, description="Delete the finished run (and its task runs) after this long."
    )
    cancel: bool = Field(
        default=False,
        description="Set to true to cancel the run: its flow pod and task pods are deleted.",
    )

    @model_validator(mode="after")
    def _entrypoint_xor_code(self) -> FlowRunSpec:
        if (self.entrypoint is None) == (self.code is None):
            raise ValueError(
                "exactly one of spec.entrypoint and spec.code must be set "
                "(entrypoint: 'pkg.module:flow' importable in the image; code: a stored flow)"
            )
        return self


class TaskRunCounts(_Status):
    """How many of the flow's task runs are in each state."""

    total: NonNegativeInt = 0
    pending: NonNegativeInt = 0
    running: NonNegativeInt = 0
    awaiting_retry: NonNegativeInt = 0
    completed: NonNegativeInt = 0
    cached: NonNegativeInt = 0
    failed: NonNegativeInt = 0
    timed_out: NonNegativeInt = 0
    crashed: NonNegativeInt = 0
    cancelled: NonNegativeInt = 0


class FlowRunStatus(_Status):
    """What the operator and the flow-runner pod report about a flow run."""

    state: StateName | None = None
    state_type: StateType | None = None
    history: list[StateTransition] = Field(default_factory=list)
    attempt: NonNegativeInt = Field(default=0, description="The current flow attempt, from 1.")
    next_retry_at: datetime | None = Field(
        default=None, description="When the next flow attempt starts (state AwaitingRetry)."
    )
    task_runs: TaskRunCounts | None = None
    tasks_summary: str | None = Field(
        default=None, description="Finished/total task runs, e.g. '3/5' (printer column)."
    )
    pod: str | None = None
    result_ref: str | None = None
    message: str | None = None
    reason: str | None = Field(
        default=None,
        description="Why the run is in its state, or cannot progress, as one CamelCase word.",
    )
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: str | None = None
    observed_generation: NonNegativeInt | None = None


# -- whole objects ------------------------------------------------------------------------------


class _Object(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    kind_name: ClassVar[str]
    plural: ClassVar[str]

    api_version: Literal["flowpod.dev/v1alpha1"] = API_VERSION
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def from_object(cls: type[_O], obj: Mapping[str, Any]) -> _O:
        """Parse an object as the API server (or kopf) returns it."""
        kind = obj.get("kind")
        if kind is not None and kind != cls.kind_name:
            raise ValueError(f"expected a {cls.kind_name} object, got kind {kind!r}")
        return cls.model_validate(dict(obj))


_O = TypeVar("_O", bound=_Object)


class TaskRunResource(_Object):
    """A whole TaskRun object: metadata, spec and status."""

    kind_name: ClassVar[str] = "TaskRun"
    plural: ClassVar[str] = "taskruns"

    kind: Literal["TaskRun"] = "TaskRun"
    spec: TaskRunSpec
    status: TaskRunStatus = Field(default_factory=TaskRunStatus)


class FlowRunResource(_Object):
    """A whole FlowRun object: metadata, spec and status."""

    kind_name: ClassVar[str] = "FlowRun"
    plural: ClassVar[str] = "flowruns"

    kind: Literal["FlowRun"] = "FlowRun"
    spec: FlowRunSpec
    status: FlowRunStatus = Field(default_factory=FlowRunStatus)


def from_object(obj: Mapping[str, Any]) -> TaskRunResource | FlowRunResource:
    """Parse a TaskRun or FlowRun object, choosing the model by its ``kind``."""
    kind = obj.get("kind")
    if kind == "TaskRun":
        return TaskRunResource.from_object(obj)
    if kind == "FlowRun":
        return FlowRunResource.from_object(obj)
    raise ValueError(f"not a flowpod object: kind {kind!r} (expected TaskRun or FlowRun)")


def _check_name(value: str, what: str, max_length: int) -> None:
    if not (0 < len(value) <= max_length and re.fullmatch(_DNS_SUBDOMAIN, value)):
        raise ValueError(
            f"invalid {what} {value!r}: use at most {max_length} lower-case letters, digits, "
            "'-' and '.', starting and ending with a letter or digit"
        )


def _manifest(
    kind: str,
    spec: _Model,
    name: str,
    namespace: str,
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
    owner_references: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    _check_name(name, f"{kind} name", 253)
    _check_name(namespace, "namespace", 63)
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    if owner_references:
        metadata["ownerReferences"] = list(owner_references)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec.to_wire()}
