"""``RunnerOptions``: every option of ``KubernetesTaskRunner``, declared once with its default.

The runner keeps an explicit keyword signature (for users and type checkers) and stores the
values here; its attribute reads (``runner.image``) come from this value, and a copy of a runner
is a copy of it (``dataclasses.replace``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowpod._contract.pod_settings import StorageSpec
    from flowpod._kube.taskrun_api import TaskRunApi
    from flowpod._storage import ResultStore

__all__ = ["OPTION_NAMES", "RunnerOptions", "check_pending_timeout"]

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


@dataclass(frozen=True)
class RunnerOptions:
    """How a ``KubernetesTaskRunner`` creates TaskRuns and where it reads their results."""

    namespace: str | None = None
    """Where TaskRuns are created (default: the kubeconfig context's namespace, or the pod's
    own)."""
    image: str | None = None
    """The task pods' image (default: the operator's)."""
    storage: StorageSpec | Mapping[str, Any] | None = None
    """The S3 storage (a ``StorageSpec`` or a dict with bucket, prefix, endpoint, region,
    credentialsSecret; default from ``FLOWPOD_S3_*``, with ``FLOWPOD_S3_CLUSTER_ENDPOINT`` as the
    endpoint written into the TaskRuns when set)."""
    kubeconfig: str | None = None
    """Which kubeconfig file (default: in-cluster, else ``$KUBECONFIG`` / ``~/.kube/config``)."""
    context: str | None = None
    """Which kubeconfig context."""
    env: Sequence[Mapping[str, Any]] | Mapping[str, str] | None = None
    """Environment of every task pod (a list of EnvVar objects, or name -> value)."""
    resources: Mapping[str, Any] | None = None
    """Every task pod's resources (requests / limits)."""
    service_account_name: str | None = None
    """Every task pod's ServiceAccount."""
    node_selector: Mapping[str, str] | None = None
    """Every task pod's node selector."""
    tolerations: Sequence[Mapping[str, Any]] | None = None
    """Every task pod's tolerations."""
    image_pull_policy: str | None = None
    """Every task pod's image pull policy."""
    store: ResultStore | None = None
    """This process's own view of the bucket, when it reaches S3 at another address than the
    pods do (an in-cluster endpoint vs. a port-forward), or for tests. Not pickled."""
    api: TaskRunApi | None = None
    """Replaces the API access (tests, custom setups). Not pickled."""
    submit_workers: int = 16
    """Threads that write payloads and create TaskRuns."""
    watch_timeout_seconds: int = 60
    """How long one watch request of the TaskRuns lasts before it is renewed."""
    pending_timeout_seconds: float | None = None
    """How long an attempt may wait to start (pod creation, scheduling, image pull) before the
    operator ends it Crashed with reason PendingTimeout (``spec.pendingTimeoutSeconds``; default:
    the operator's)."""
    oom_memory_factor: float | None = None
    """After an OOMKilled attempt, multiply the next attempt's memory limit by this (> 1; with
    ``oom_max_memory``: ``spec.oomMemoryRaise``)."""
    oom_max_memory: str | None = None
    """Never raise the memory limit above this, e.g. '4Gi' (with ``oom_memory_factor``)."""

    def __post_init__(self) -> None:
        if self.namespace is not None and not _NAMESPACE.fullmatch(self.namespace):
            raise ValueError(
                f"namespace {self.namespace!r} is not a valid Kubernetes namespace name (lower-"
                "case letters, digits and '-', at most 63 characters)"
            )
        if not isinstance(self.submit_workers, int) or self.submit_workers < 1:
            raise ValueError(f"submit_workers must be an int >= 1, got {self.submit_workers!r}")
        check_pending_timeout(self.pending_timeout_seconds)
        _check_oom(self.oom_memory_factor, self.oom_max_memory)

    def oom_memory_raise(self) -> dict[str, Any] | None:
        """``spec.oomMemoryRaise`` on the wire (None when the options do not ask for it)."""
        if self.oom_memory_factor is None or self.oom_max_memory is None:
            return None
        return {"factor": float(self.oom_memory_factor), "max": self.oom_max_memory}

    def portable(self) -> RunnerOptions:
        """These options without what stays in this process (the store and the API access)."""
        return replace(self, store=None, api=None)


def check_pending_timeout(seconds: float | None) -> None:
    if seconds is None:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
        raise ValueError(
            f"pending_timeout_seconds must be a number of seconds > 0 (how long an attempt may "
            f"wait to start), got {seconds!r}"
        )


_QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?")


def _check_oom(factor: float | None, max_memory: str | None) -> None:
    """Both or neither; factor a number > 1 (at most 16); max a memory quantity ('4Gi')."""
    if factor is None and max_memory is None:
        return
    if max_memory is None:
        raise ValueError(
            f"oom_memory_factor={factor!r} needs oom_max_memory too: the memory limit an "
            "OOMKilled task may be raised to at most, e.g. oom_max_memory='4Gi'"
        )
    if factor is None:
        raise ValueError(
            f"oom_max_memory={max_memory!r} needs oom_memory_factor too: how much to multiply "
            "the memory limit by after an OOMKilled attempt, e.g. oom_memory_factor=2.0"
        )
    if isinstance(factor, bool) or not isinstance(factor, int | float) or not 1 < factor <= 16:
        raise ValueError(
            f"oom_memory_factor must be a number > 1 (and at most 16), got {factor!r}: the next "
            "attempt's memory limit is the last one times this factor"
        )
    if not isinstance(max_memory, str) or not _QUANTITY.fullmatch(max_memory.strip()):
        raise ValueError(
            f"oom_max_memory must be a Kubernetes memory quantity such as '4Gi' or '512Mi', "
            f"got {max_memory!r}"
        )


OPTION_NAMES = frozenset(option.name for option in fields(RunnerOptions))
"""The runner's attribute names that read an option."""
