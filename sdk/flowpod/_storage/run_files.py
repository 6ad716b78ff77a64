"""What a task pod reads and writes in the result store: payloads, outcomes, results, exceptions.

Three parties share these formats: the SDK's ``KubernetesTaskRunner`` reads results, the pod
runner (``python -m flowpod.pod``) writes an outcome per attempt, and the operator reads outcomes
to decide what comes next. The payload (the pickled task and arguments) is the submitting side's
and the pod's concern: ``flowpod._kube.payloads``. Layout, relative to the store's
prefix::

    runs/<namespace>/<taskrun>/payload                cloudpickled TaskPayload (_kube.payloads)
    runs/<namespace>/<taskrun>/outcome-<attempt>.json Outcome as JSON (camelCase keys)
    runs/<namespace>/<taskrun>/result-<attempt>       the serialised return value (no cache key)
    runs/<namespace>/<taskrun>/exception-<attempt>    the failed attempt's pickled exception
    cache/<cache key>.json / .value                   CacheRecord + value (``_storage.cache``)

Everything here is pure over a ``ResultStore``: no Kubernetes, no pydantic, no clock except the
``finishedAt`` stamp an outcome gets when the caller does not give one.
"""

from __future__ import annotations

from typing import Any

from flowpod._contract.keys import (
    exception_key,
    flow_outcome_key,
    outcome_key,
    result_key,
)
from flowpod._contract.records import FlowOutcome, Outcome
from flowpod._storage.backends import ResultStore
from flowpod._storage.serializers import get_serializer
from flowpod.exceptions import ResultNotFound

__all__ = [
    "read_exception",
    "read_flow_outcome",
    "read_outcome",
    "read_result",
    "write_exception",
    "write_flow_outcome",
    "write_outcome",
    "write_result",
]

# -- outcome ------------------------------------------------------------------------------------


def write_outcome(store: ResultStore, namespace: str, name: str, outcome: Outcome) -> str:
    """Store the outcome of attempt ``outcome.attempt``; returns its key."""
    key = outcome_key(namespace, name, outcome.attempt)
    store.put(key, outcome.to_json())
    return key


def read_outcome(store: ResultStore, namespace: str, name: str, attempt: int) -> Outcome | None:
    """The outcome of that attempt, or None when the pod wrote none (it crashed, or is running).

    A malformed record raises SerializationError: it is a bug or tampering, not a crash.
    """
    try:
        data = store.get(outcome_key(namespace, name, attempt))
    except ResultNotFound:
        return None
    return Outcome.from_json(data)


# -- results and exceptions ---------------------------------------------------------------------


def write_result(
    store: ResultStore, namespace: str, name: str, attempt: int, value: Any, serializer: str
) -> str:
    """Serialise ``value`` first (SerializationError writes nothing), store it; returns the key."""
    data = get_serializer(serializer).dumps(value)
    key = result_key(namespace, name, attempt)
    store.put(key, data)
    return key


def read_result(store: ResultStore, result_ref: str, serializer: str = "pickle") -> Any:
    """The value stored under ``result_ref`` (a result key or a cache record's value key)."""
    return get_serializer(serializer).loads(store.get(result_ref))


def write_exception(
    store: ResultStore, namespace: str, name: str, attempt: int, exc: BaseException
) -> str | None:
    """Pickle a failed attempt's exception so the caller can re-raise its own type.

    Returns the key, or None when the exception does not pickle (then only its repr travels, in
    the outcome).
    """
    import cloudpickle

    try:
        data: bytes = cloudpickle.dumps(exc, protocol=5)
    except Exception:  # noqa: BLE001 - an unpicklable exception is reported by its repr instead
        return None
    key = exception_key(namespace, name, attempt)
    store.put(key, data)
    return key


def read_exception(store: ResultStore, exception_ref: str) -> BaseException | None:
    """The exception stored under ``exception_ref``, or None when it is missing or will not load
    here (its class is not importable on this side)."""
    import pickle

    try:
        value = pickle.loads(store.get(exception_ref))
    except Exception:  # noqa: BLE001 - the caller falls back to the outcome's message
        return None
    return value if isinstance(value, BaseException) else None


# -- flow runs ----------------------------------------------------------------------------------
# A FlowRun's objects live in the same folder layout as a TaskRun's:
#     runs/<namespace>/<flowrun>/flow-code                 the cloudpickled Flow (spec.code)
#     runs/<namespace>/<flowrun>/flow-outcome-<n>.json     FlowOutcome of flow attempt n
#     runs/<namespace>/<flowrun>/flow-result-<n>           the flow's serialised return value
#     runs/<namespace>/<name>/log-<n>.txt                  any pod's log (task or flow attempt n)


def write_flow_outcome(store: ResultStore, namespace: str, name: str,
                       outcome: FlowOutcome) -> str:
    key = flow_outcome_key(namespace, name, outcome.attempt)
    store.put(key, outcome.to_json())
    return key


def read_flow_outcome(store: ResultStore, namespace: str, name: str,
                      attempt: int) -> FlowOutcome | None:
    """The flow attempt's outcome, or None when the flow pod wrote none."""
    try:
        data = store.get(flow_outcome_key(namespace, name, attempt))
    except ResultNotFound:
        return None
    return FlowOutcome.from_json(data)
