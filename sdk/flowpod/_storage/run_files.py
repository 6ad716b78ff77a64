"""What a task pod reads and writes in the result store: payloads, outcomes, results, exceptions.

Three parties share these formats: the SDK's ``KubernetesTaskRunner`` writes the payload and reads
results, the pod runner (``python -m flowpod.pod``) reads the payload and writes an outcome per
attempt, and the operator reads outcomes to decide what comes next. Layout, relative to the store's
prefix::

    runs/<namespace>/<taskrun>/payload                cloudpickled TaskPayload
    runs/<namespace>/<taskrun>/outcome-<attempt>.json Outcome as JSON (camelCase keys)
    runs/<namespace>/<taskrun>/result-<attempt>       the serialised return value (no cache key)
    runs/<namespace>/<taskrun>/exception-<attempt>    the failed attempt's pickled exception
    cache/<cache key>.json / .value                   CacheRecord + value (``_storage.stores``)

Everything here is pure over a ``ResultStore``: no Kubernetes, no pydantic, no clock except the
``finishedAt`` stamp an outcome gets when the caller does not give one.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from flowpod._contract.keys import (
    exception_key,
    flow_outcome_key,
    outcome_key,
    payload_key,
    result_key,
)
from flowpod._contract.records import FlowOutcome, Outcome
from flowpod._storage.stores import ResultStore, get_serializer
from flowpod.exceptions import ResultNotFound, SerializationError

if TYPE_CHECKING:
    from flowpod.tasks import Task

__all__ = [
    "PAYLOAD_VERSION",
    "FlowRunInfo",
    "TaskPayload",
    "read_exception",
    "read_flow_outcome",
    "read_outcome",
    "read_payload",
    "read_result",
    "write_exception",
    "write_flow_outcome",
    "write_outcome",
    "write_payload",
    "write_result",
]

PAYLOAD_VERSION: Final = 1
"""Bumped when TaskPayload changes incompatibly; a pod refuses payloads of another version."""

# -- keys ---------------------------------------------------------------------------------------


# -- payload ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowRunInfo:
    """The flow run a task run belongs to, as ``flowpod.runtime.flow_run`` shows it in the pod."""

    id: str
    name: str
    flow_name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    persist_result: bool | None = None
    result_serializer: str | None = None


@dataclass(frozen=True)
class TaskPayload:
    """Everything a pod needs to run one attempt of a task run (cloudpickled to the store)."""

    task: Task[Any, Any]
    parameters: dict[str, Any]
    run_name: str
    task_run_id: str
    tags: list[str] = field(default_factory=list)
    log_prints: bool = False
    flow_run: FlowRunInfo | None = None
    parent_task_run_id: str | None = None
    cache_key: str | None = None
    cache_expiration_seconds: float | None = None
    result_serializer: str = "pickle"
    retries: int = 0
    """The retries the TaskRun allows (as in its spec): retry_condition_fn is only asked while
    one remains, as in the local engine."""
    version: int = PAYLOAD_VERSION


def _modules_to_pickle_by_value(task: Any) -> list[ModuleType]:
    """Modules of the task's function that a pod's image probably cannot import.

    ``__main__`` is pickled by value by cloudpickle already. Other modules outside the installed
    packages (a script next to the flow, a test module) are registered by value too, so the pod
    needs nothing of the caller's source tree; installed packages and flowpod stay references.
    """
    fn = getattr(task, "fn", None)
    module_name = getattr(fn, "__module__", None)
    if not module_name or module_name == "__main__":
        return []
    module = sys.modules.get(module_name)
    path = getattr(module, "__file__", None)
    if module is None or path is None or module_name.split(".")[0] == "flowpod":
        return []
    installed = ("site-packages", "dist-packages")
    if any(part in path for part in installed) or path.startswith(_stdlib_dirs()):
        return []
    return [module]


def _stdlib_dirs() -> tuple[str, ...]:
    import sysconfig

    paths = sysconfig.get_paths()
    return tuple(paths[name] for name in ("stdlib", "platstdlib") if name in paths)


_by_value_guard = threading.Lock()


@contextmanager
def _pickled_by_value(modules: Iterable[ModuleType]) -> Iterator[None]:
    import cloudpickle

    # cloudpickle's registry is process-global: hold a lock while it is changed.
    with _by_value_guard:
        added = []
        for module in modules:
            try:
                cloudpickle.register_pickle_by_value(module)
            except ValueError:  # already registered (by the user, or a parent package)
                continue
            added.append(module)
        try:
            yield
        finally:
            for module in added:
                cloudpickle.unregister_pickle_by_value(module)


def dump_payload(payload: TaskPayload, by_value: Iterable[ModuleType] | None = None) -> bytes:
    """The payload as bytes; ``by_value`` defaults to the modules a pod likely cannot import."""
    import cloudpickle

    modules = list(by_value) if by_value is not None else _modules_to_pickle_by_value(payload.task)
    try:
        with _pickled_by_value(modules):
            data: bytes = cloudpickle.dumps(payload, protocol=5)
    except Exception as exc:
        raise SerializationError(
            f"cannot pickle the task run {payload.run_name!r} for a pod "
            f"({type(exc).__name__}: {exc}). The task function, its arguments and whatever they "
            "reference must be picklable by cloudpickle; pass plain data as arguments and create "
            "clients (database connections, locks) inside the task"
        ) from exc
    return data


def write_payload(
    store: ResultStore,
    namespace: str,
    name: str,
    payload: TaskPayload,
    by_value: Iterable[ModuleType] | None = None,
) -> str:
    """Store ``payload`` for TaskRun ``namespace/name``; returns its key (for ``spec.payload``)."""
    key = payload_key(namespace, name)
    store.put(key, dump_payload(payload, by_value))
    return key


def read_payload(store: ResultStore, namespace: str, name: str) -> TaskPayload:
    """The payload of TaskRun ``namespace/name``; ResultNotFound if none was written."""
    import pickle

    data = store.get(payload_key(namespace, name))
    try:
        payload = pickle.loads(data)
    except Exception as exc:
        raise SerializationError(
            f"cannot load the payload of task run {namespace}/{name} ({type(exc).__name__}: "
            f"{exc}); the pod's image must have the packages the task imports (and the same "
            "flowpod and Python minor version as the submitting side)"
        ) from exc
    if not isinstance(payload, TaskPayload):
        raise SerializationError(
            f"the payload of task run {namespace}/{name} is a {type(payload).__name__}, "
            "not a TaskPayload"
        )
    if payload.version != PAYLOAD_VERSION:
        raise SerializationError(
            f"the payload of task run {namespace}/{name} has format version {payload.version}; "
            f"this flowpod reads version {PAYLOAD_VERSION}: use the same flowpod version in the "
            "image as on the submitting side"
        )
    return payload


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
