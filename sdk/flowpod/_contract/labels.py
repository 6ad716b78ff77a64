"""The labels flowpod puts on its Kubernetes objects, how a name becomes a label value, and how
an attempt's pod is named.

One definition for every side that writes or selects them: the SDK's task runner and CLI, the
flow and task pods, the operator. A FlowRun or TaskRun name may be up to 253 characters, a label
value only 63, so ``label_value`` keeps short names as they are and turns long or odd ones into a
prefix plus a hash of the whole name (the same on every side, so selectors still match).
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "ATTEMPT_LABEL",
    "FLOWRUN_LABEL",
    "MANAGED_BY",
    "MANAGED_BY_LABEL",
    "MAX_NAME",
    "ROLE_LABEL",
    "RUNNER_LABEL",
    "TASKRUN_LABEL",
    "TASK_LABEL",
    "attempt_pod_name",
    "flow_pod_name",
    "label_value",
    "short_hash",
]

TASKRUN_LABEL = "flowpod.dev/taskrun"
ATTEMPT_LABEL = "flowpod.dev/attempt"
FLOWRUN_LABEL = "flowpod.dev/flowrun"
ROLE_LABEL = "flowpod.dev/role"
RUNNER_LABEL = "flowpod.dev/runner"
TASK_LABEL = "flowpod.dev/task"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "flowpod-operator"
"""The ``MANAGED_BY_LABEL`` value of the pods the operator creates (the watches select on it)."""

MAX_NAME = 63
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def short_hash(text: str) -> str:
    """8 hex characters of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]


def label_value(value: str) -> str:
    """``value`` as a label value (at most 63 characters, alphanumeric at both ends); longer or
    odd values keep a prefix plus an 8-hex hash."""
    if len(value) <= MAX_NAME and _LABEL_VALUE.fullmatch(value):
        return value
    prefix = re.sub(r"[^-A-Za-z0-9_.]", "-", value)[: MAX_NAME - 9].strip("-_.")
    return f"{prefix}-{short_hash(value)}" if prefix else short_hash(value)


def attempt_pod_name(run: str, attempt: int) -> str:
    """The pod of ``attempt`` of TaskRun ``run``: ``<run>-<attempt>``; names longer than 63
    characters keep a prefix and get an 8-hex hash of the full name before the attempt, so
    distinct runs never share a pod name. The operator creates it; the CLI finds it by it."""
    if attempt < 1:
        raise ValueError(f"attempts are numbered from 1, got {attempt}")
    name = f"{run}-{attempt}"
    if len(name) <= MAX_NAME:
        return name
    suffix = f"-{short_hash(name)}-{attempt}"
    prefix = run[: MAX_NAME - len(suffix)].rstrip("-.")
    return prefix + suffix


def flow_pod_name(flowrun: str, attempt: int) -> str:
    """The flow pod of ``attempt`` of FlowRun ``flowrun``: ``<flowrun>-flow-<attempt>``, shortened
    the same way."""
    return attempt_pod_name(f"{flowrun}-flow", attempt)
