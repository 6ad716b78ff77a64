"""The payload of a TaskRun: the task, its arguments and its run's context, cloudpickled.

The submitting side (``KubernetesTaskRunner``) writes it to ``runs/<namespace>/<taskrun>/payload``
and the pod runner (``python -m flowpod.pod``) reads it back; the operator never looks inside.
Modules a pod's image probably cannot import (a script next to the flow, a test module) are
pickled by value; ``flowpod._kube.submit`` uses the same helpers for a whole flow.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final

from flowpod._contract.keys import payload_key
from flowpod.exceptions import SerializationError

if TYPE_CHECKING:
    from flowpod._storage import ResultStore
    from flowpod.tasks import Task

__all__ = [
    "PAYLOAD_VERSION",
    "FlowRunInfo",
    "TaskPayload",
    "dump_payload",
    "read_payload",
    "write_payload",
]

PAYLOAD_VERSION: Final = 1
"""Bumped when TaskPayload changes incompatibly; a pod refuses payloads of another version."""

# -- keys ---------------------------------------------------------------------------------------


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
