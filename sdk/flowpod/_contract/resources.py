"""The flowpod custom resources (``TaskRun``, ``FlowRun``) as pydantic models.

One source of truth for three readers: the SDK builds manifests from these models, the operator
parses watched objects with them, and ``flowpod._cli.crds`` turns their JSON schema into the CRD
YAML in ``crds/``. Field names are snake_case in Python and camelCase on the wire (aliases), and
every spec model forbids unknown fields, so a typo - or a credential pasted into ``storage`` - is an
error instead of being silently dropped.

Credentials never live in a spec: ``storage.credentialsSecret`` names a Secret and the keys in
it; environment variables that carry AWS credentials must come from ``valueFrom``.

This module imports pydantic, so only the operator, the Kubernetes task runner and the CRD
generator import it; ``import flowpod`` never does.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from flowpod._contract.retrying import MAX_RETRY_DELAYS
from flowpod._contract.states import StateName, StateType

__all__ = [
    "API_VERSION",
    "CREDENTIAL_ENV_NAMES",
    "GROUP",
    "VERSION",
    "ConfigMapKeySelector",
    "EnvVar",
    "EnvVarSource",
    "FlowRun",
    "FlowRunSpec",
    "FlowRunStatus",
    "ImagePullPolicy",
    "ObjectMeta",
    "ResourceRequirements",
    "SecretCredentialsRef",
    "SecretKeySelector",
    "StateTransition",
    "StorageSpec",
    "TaskDefaults",
    "TaskRun",
    "TaskRunCounts",
    "TaskRunSpec",
    "TaskRunStatus",
    "from_object",
]

GROUP: Final = "flowpod.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = "flowpod.dev/v1alpha1"

# DNS-1123 subdomain: what Kubernetes accepts for object names (pods, secrets, service accounts).
_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Keys of a Secret's or ConfigMap's data.
_DATA_KEY = r"^[-._a-zA-Z0-9]+$"
# What Kubernetes accepts as an environment variable name.
_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
# S3 bucket names (the common subset S3 and MinIO both accept).
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
# "pkg.module:flow_function" or "path/to/file.py:flow_function".
_ENTRYPOINT = r"^[^:\s]+:[A-Za-z_][A-Za-z0-9_.]*$"

# Environment variables that hold credentials: literal values are refused, valueFrom is required.
CREDENTIAL_ENV_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")

# Names people use for credentials; a storage spec containing one gets a pointed error message.
_CREDENTIAL_FIELD_HINTS = ("access", "secret", "password", "token", "credential")

DnsName = Annotated[str, Field(min_length=1, max_length=253, pattern=_DNS_SUBDOMAIN)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]
# Kubernetes quantities ("500m", "1Gi", 2): the CRD marks them x-kubernetes-int-or-string.
Quantity = int | str


class _Model(BaseModel):
    """Base of every flowpod resource model: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """This model as JSON-able Kubernetes data: camelCase keys, unset optionals omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Status(_Model):
    # Status is written by the operator, and kopf may add its own keys (progress storage); parsing
    # a watched object must not fail on them, so unknown status fields are ignored, not refused.
    model_config = ConfigDict(extra="ignore")


class ImagePullPolicy(enum.StrEnum):
    """When the kubelet pulls the image, as in a pod's container spec."""

    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


# -- pod settings -------------------------------------------------------------------------------


class SecretKeySelector(_Model):
    """One key of a Secret in the run's namespace."""

    name: DnsName
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=_DATA_KEY)]
    optional: bool | None = None


class ConfigMapKeySelector(_Model):
    """One key of a ConfigMap in the run's namespace."""

    name: DnsName
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=_DATA_KEY)]
    optional: bool | None = None


class EnvVarSource(_Model):
    """Where an environment variable's value comes from: exactly one Secret or ConfigMap key."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                    "message": "valueFrom needs exactly one of secretKeyRef and configMapKeyRef",
                }
            ]
        }
    )

    secret_key_ref: SecretKeySelector | None = None
    config_map_key_ref: ConfigMapKeySelector | None = None

    @model_validator(mode="after")
    def _exactly_one_source(self) -> EnvVarSource:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("valueFrom needs exactly one of secretKeyRef and configMapKeyRef")
        return self


class EnvVar(_Model):
    """An environment variable of the run's pod: a literal value or a Secret/ConfigMap key."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.value) && has(self.valueFrom))",
                    "message": "an env entry takes either value or valueFrom, not both",
                },
                {
                    "rule": "!(self.name in " + repr(list(CREDENTIAL_ENV_NAMES)) + ""
                    " && has(self.value))",
                    "message": "credentials must not be written into a spec: take "
                    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN from a "
                    "Secret with valueFrom.secretKeyRef",
                },
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=_ENV_NAME)]
    value: str | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name!r} takes either value or valueFrom, not both")
        if self.name in CREDENTIAL_ENV_NAMES and self.value is not None:
            raise ValueError(
                f"env {self.name!r} carries a credential and must not hold a literal value: "
                "store it in a Secret and use valueFrom.secretKeyRef"
            )
        return self


class ResourceRequirements(_Model):
    """CPU and memory requests and limits of the run's container (Kubernetes quantities)."""

    requests: dict[str, Quantity] | None = None
    limits: dict[str, Quantity] | None = None


class _PodSettings(_Model):
    """Settings copied onto the pod that runs an attempt."""

    image: Annotated[str, Field(min_length=1)] | None = Field(
        default=None, description="Container image; the operator's default image when unset."
    )
    image_pull_policy: ImagePullPolicy | None = None
    service_account_name: DnsName | None = None
    resources: ResourceRequirements | None = None
    env: Annotated[list[EnvVar], Field(max_length=256)] | None = None
    node_selector: dict[str, str] | None = None
    tolerations: Annotated[list[dict[str, Any]], Field(max_length=64)] | None = Field(
        default=None, description="Pod tolerations, passed to the pod unchanged."
    )


# -- storage ------------------------------------------------------------------------------------


class SecretCredentialsRef(_Model):
    """A Secret holding the S3 credentials: its name and which keys hold which value."""

    name: DnsName
    access_key_id_key: Annotated[str, Field(min_length=1, pattern=_DATA_KEY)] = (
        "AWS_ACCESS_KEY_ID"
    )
    secret_access_key_key: Annotated[str, Field(min_length=1, pattern=_DATA_KEY)] = (
        "AWS_SECRET_ACCESS_KEY"
    )


class StorageSpec(_Model):
    """Where payloads and results live: an S3 bucket and prefix, and a Secret for credentials."""

    bucket: Annotated[str, Field(min_length=3, max_length=63, pattern=_BUCKET)] = Field(
        description="S3 bucket holding payloads, results and cache records."
    )
    prefix: Annotated[str, Field(max_length=512)] = Field(
        default="", description="Key prefix inside the bucket (a folder), e.g. 'team-a'."
    )
    endpoint: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] | None = Field(
        default=None, description="S3 endpoint URL, e.g. http://minio.storage:9000; AWS if unset."
    )
    region: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, description="S3 region; the SDK's AWS configuration if unset."
    )
    credentials_secret: SecretCredentialsRef | None = Field(
        default=None,
        description="Secret with the credentials; the pod's own AWS credential chain if unset.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_inline_credentials(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            known = {"bucket", "prefix", "endpoint", "region", "credentialsSecret",
                     "credentials_secret"}
            suspicious = sorted(
                str(key) for key in data
                if key not in known
                and any(hint in str(key).lower() for hint in _CREDENTIAL_FIELD_HINTS)
            )
            if suspicious:
                raise ValueError(
                    f"storage must not contain credentials (found {', '.join(suspicious)}): "
                    "put them in a Secret and reference it with storage.credentialsSecret "
                    "{name, accessKeyIdKey, secretAccessKeyKey}"
                )
        return data


# -- shared status pieces -----------------------------------------------------------------------


class StateTransition(_Status):
    """One entry of a run's history: the state entered, when, and why."""

    state: StateName
    type: StateType
    timestamp: datetime
    message: str | None = None
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


class TaskRunSpec(_PodSettings):
    """One task run (all its attempts): what to run, how to retry it, where its data lives."""

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

    def to_manifest(
        self,
        name: str,
        namespace: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        owner_references: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A TaskRun object ready for the API server's create call."""
        return _manifest("TaskRun", self, name, namespace, labels, annotations, owner_references)


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


class FlowRunSpec(_PodSettings):
    """One flow run: what to run (an entrypoint or stored code), its parameters and settings."""

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

    def to_manifest(
        self,
        name: str,
        namespace: str,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        owner_references: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A FlowRun object ready for the API server's create call."""
        return _manifest("FlowRun", self, name, namespace, labels, annotations, owner_references)


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


class TaskRun(_Object):
    """A whole TaskRun object: metadata, spec and status."""

    kind_name: ClassVar[str] = "TaskRun"
    plural: ClassVar[str] = "taskruns"

    kind: Literal["TaskRun"] = "TaskRun"
    spec: TaskRunSpec
    status: TaskRunStatus = Field(default_factory=TaskRunStatus)


class FlowRun(_Object):
    """A whole FlowRun object: metadata, spec and status."""

    kind_name: ClassVar[str] = "FlowRun"
    plural: ClassVar[str] = "flowruns"

    kind: Literal["FlowRun"] = "FlowRun"
    spec: FlowRunSpec
    status: FlowRunStatus = Field(default_factory=FlowRunStatus)


def from_object(obj: Mapping[str, Any]) -> TaskRun | FlowRun:
    """Parse a TaskRun or FlowRun object, choosing the model by its ``kind``."""
    kind = obj.get("kind")
    if kind == "TaskRun":
        return TaskRun.from_object(obj)
    if kind == "FlowRun":
        return FlowRun.from_object(obj)
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
