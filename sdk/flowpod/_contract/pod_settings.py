"""What every flowpod resource's spec says about its pods (image, env, resources, service account,
storage), and the base model of every resource model.

Part of the resources' single source of truth (``resources`` holds the TaskRun and FlowRun
objects). Three readers: the SDK builds manifests from these models, the operator
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
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "CREDENTIAL_ENV_NAMES",
    "ConfigMapKeySelector",
    "DnsName",
    "EnvVar",
    "EnvVarSource",
    "ImagePullPolicy",
    "NonNegativeInt",
    "OomMemoryRaise",
    "PositiveSeconds",
    "ResourceRequirements",
    "SecretCredentialsRef",
    "SecretKeySelector",
    "Seconds",
    "StorageSpec",
]

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


class OomMemoryRaise(_Model):
    """After an attempt is OOMKilled, give the next attempt more memory: the memory limit (and a
    request above it) times ``factor``, up to ``max``."""

    factor: Annotated[float, Field(gt=1, le=16)] = Field(
        default=2.0, description="Multiply the memory limit by this after each OOMKilled attempt."
    )
    max: Quantity = Field(description="Never raise the memory limit above this, e.g. '4Gi'.")


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


