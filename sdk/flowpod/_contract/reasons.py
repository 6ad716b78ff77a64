"""Why a run is where it is: the reasons the operator writes to ``status.reason`` (and to the
reason of its Warning events), one CamelCase word each, as Kubernetes names its own.

The SDK's runner, ``flowpod get`` and ``flowpod submit --wait`` show them; the operator decides
with them which problems wait for the pending deadline and which end an attempt at once.
"""

from __future__ import annotations

__all__ = [
    "CRASH_REASONS",
    "INFRASTRUCTURE_REASONS",
    "PERMANENT_REASONS",
    "WAITING_REASONS",
    "Reason",
]


class Reason:
    """The reasons, as constants (plain strings on the wire)."""

    # The pod cannot be created (the API server refused it).
    SERVICE_ACCOUNT_NOT_FOUND = "ServiceAccountNotFound"
    FORBIDDEN = "Forbidden"
    QUOTA_EXCEEDED = "QuotaExceeded"
    INVALID_POD_SPEC = "InvalidPodSpec"
    POD_CREATE_FAILED = "PodCreateFailed"
    # The pod exists but cannot start.
    UNSCHEDULABLE = "Unschedulable"
    ERR_IMAGE_PULL = "ErrImagePull"
    IMAGE_PULL_BACK_OFF = "ImagePullBackOff"
    INVALID_IMAGE_NAME = "InvalidImageName"
    SECRET_NOT_FOUND = "SecretNotFound"
    CONFIG_MAP_NOT_FOUND = "ConfigMapNotFound"
    CREATE_CONTAINER_CONFIG_ERROR = "CreateContainerConfigError"
    CREATE_CONTAINER_ERROR = "CreateContainerError"
    # The result store cannot be read or written.
    STORAGE_UNAVAILABLE = "StorageUnavailable"
    # How an attempt ended.
    PENDING_TIMEOUT = "PendingTimeout"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    POD_DELETED = "PodDeleted"
    NODE_LOST = "NodeLost"
    NO_OUTCOME = "NoOutcome"
    TASK_FAILED = "TaskFailed"


PERMANENT_REASONS = frozenset({
    Reason.SERVICE_ACCOUNT_NOT_FOUND,
    Reason.FORBIDDEN,
    Reason.INVALID_POD_SPEC,
    Reason.INVALID_IMAGE_NAME,
    Reason.SECRET_NOT_FOUND,
    Reason.CONFIG_MAP_NOT_FOUND,
})
"""Problems that do not go away by waiting: the attempt ends at once (no pending deadline), and
no retry is made - the next attempt would meet the same."""

WAITING_REASONS = frozenset({
    Reason.QUOTA_EXCEEDED,
    Reason.POD_CREATE_FAILED,
    Reason.UNSCHEDULABLE,
    Reason.ERR_IMAGE_PULL,
    Reason.IMAGE_PULL_BACK_OFF,
    Reason.CREATE_CONTAINER_CONFIG_ERROR,
    Reason.CREATE_CONTAINER_ERROR,
    Reason.STORAGE_UNAVAILABLE,
})
"""Problems that may resolve by themselves: reported at once, waited out until the pending
deadline."""

CRASH_REASONS = frozenset({
    Reason.PENDING_TIMEOUT,
    Reason.OOM_KILLED,
    Reason.EVICTED,
    Reason.POD_DELETED,
    Reason.NODE_LOST,
    Reason.NO_OUTCOME,
})
"""Infrastructure failures of an attempt: the run is Crashed, and its retry policy may retry."""

INFRASTRUCTURE_REASONS = frozenset({
    Reason.POD_DELETED,
    Reason.EVICTED,
    Reason.NODE_LOST,
    Reason.NO_OUTCOME,
})
"""Crashes that say nothing about the task (its pod was taken away, or could not reach the
store): once the run's own retries are used, the operator still gives it a few more attempts
(``FLOWPOD_OPERATOR_INFRASTRUCTURE_RETRIES``), so a fault of the platform loses no task."""
