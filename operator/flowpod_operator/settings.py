"""The operator's own configuration: defaults for pods and storage, and what it watches.

Read once at start-up from ``FLOWPOD_OPERATOR_*`` / ``FLOWPOD_S3_*`` environment variables (the
command line overrides some of them). Everything a TaskRun's spec leaves unset falls back to
these values; a spec value always wins.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_CREDENTIALS_SECRET",
    "DEFAULT_FLOW_SERVICE_ACCOUNT",
    "DEFAULT_IMAGE",
    "OperatorConfig",
    "StorageDefaults",
]

DEFAULT_IMAGE = "ghcr.io/flowpod/flowpod:latest"
DEFAULT_CREDENTIALS_SECRET = "flowpod-s3"
DEFAULT_FLOW_SERVICE_ACCOUNT = "flowpod-flow-runner"


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


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one operator process."""

    default_image: str = DEFAULT_IMAGE
    """Image of task pods whose TaskRun names none (``FLOWPOD_OPERATOR_IMAGE``)."""
    storage: StorageDefaults = field(default_factory=StorageDefaults)
    """Storage used when a TaskRun has no ``spec.storage``."""
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch (``FLOWPOD_OPERATOR_NAMESPACES``, comma-separated); empty: all."""
    run_as_user: int = 1000
    """The non-root uid task pods run as."""
    success_events: bool = False
    """Post Normal events for Completed/Cached too (``FLOWPOD_OPERATOR_SUCCESS_EVENTS=1``).
    Off by default: one more API write per TaskRun for a transition the status already shows;
    Warning events (failures, retries, crashes, timeouts) are always posted."""
    api_workers: int = 16
    """Threads making Kubernetes and S3 calls (both clients are synchronous)."""
    flow_service_account: str = DEFAULT_FLOW_SERVICE_ACCOUNT
    """ServiceAccount of flow pods whose FlowRun names none
    (``FLOWPOD_OPERATOR_FLOW_SERVICE_ACCOUNT``); see deploy/flow-runner-rbac.yaml."""
    ttl_seconds: int | None = None
    """Default ``ttlSecondsAfterFinished`` of FlowRuns (``FLOWPOD_OPERATOR_TTL_SECONDS``);
    None keeps finished FlowRuns."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OperatorConfig:
        """The configuration the environment describes (unset variables keep the defaults)."""
        env = os.environ if environ is None else environ
        secret = env.get("FLOWPOD_OPERATOR_CREDENTIALS_SECRET", DEFAULT_CREDENTIALS_SECRET)
        storage = StorageDefaults(
            bucket=env.get("FLOWPOD_S3_BUCKET", "").strip(),
            prefix=env.get("FLOWPOD_S3_PREFIX", ""),
            endpoint=env.get("FLOWPOD_S3_ENDPOINT") or None,
            region=env.get("FLOWPOD_S3_REGION") or None,
            credentials_secret=secret.strip() or None,
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
        ttl_text = env.get("FLOWPOD_OPERATOR_TTL_SECONDS", "").strip()
        try:
            ttl = int(ttl_text) if ttl_text else None
        except ValueError:
            raise ValueError(
                f"FLOWPOD_OPERATOR_TTL_SECONDS must be a whole number of seconds, got {ttl_text!r}"
            ) from None
        if ttl is not None and ttl < 0:
            raise ValueError(f"FLOWPOD_OPERATOR_TTL_SECONDS must be >= 0, got {ttl}")
        return cls(
            flow_service_account=(env.get("FLOWPOD_OPERATOR_FLOW_SERVICE_ACCOUNT", "").strip()
                                  or DEFAULT_FLOW_SERVICE_ACCOUNT),
            ttl_seconds=ttl,
            default_image=env.get("FLOWPOD_OPERATOR_IMAGE", "").strip() or DEFAULT_IMAGE,
            storage=storage,
            namespaces=namespaces,
            success_events=env.get("FLOWPOD_OPERATOR_SUCCESS_EVENTS", "0") in ("1", "true", "yes"),
            api_workers=workers,
        )
