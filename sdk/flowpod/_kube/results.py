"""From a TaskRun's status to the state of its future: results, exceptions, transient states.

A final TaskRun resolves its future with the value read back from the result store (Completed,
Cached; the serializer comes from the run's cache record or its attempt's outcome, as a
``ResultRef``), or with the task's own exception when the pod could pickle it (Failed,
TimedOut, Crashed, Cancelled). Non-final states the watch sees become Pending, Running,
AwaitingRetry or Retrying.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flowpod._contract.keys import cache_record_key
from flowpod._contract.records import CacheRecord, ResultRef
from flowpod._storage import read_exception, read_outcome, read_result
from flowpod.exceptions import TaskRunTimeoutError
from flowpod.states import AwaitingRetry, Crashed, Pending, Retrying, Running, State, StateType

if TYPE_CHECKING:
    from flowpod._storage import ResultStore
    from flowpod.context.runs import TaskRun
    from flowpod.states import State

__all__ = ["final_state", "result_ref", "safely", "transient_state"]


def final_state(store: ResultStore, namespace: str, name: str, task_run: TaskRun,
                status: Mapping[str, Any]) -> State[Any]:
    """The final state of TaskRun ``namespace/name`` (``status`` has a final state)."""
    state_name = str(status["state"])
    message = status.get("message")
    if state_name in ("Completed", "Cached"):
        ref = status.get("resultRef")
        if not ref:
            raise RuntimeError(f"TaskRun {name} is {state_name} but has no resultRef")
        result = result_ref(store, namespace, name, str(ref), task_run.cache_key, status)
        value = read_result(store, result.key, result.serializer)
        done: State[Any] = State(StateType.COMPLETED, name=state_name, message=message,
                                 data=value)
        if task_run.cache_key:
            done.state_details.cache_key = task_run.cache_key
        return done
    attempt = int(status.get("attempt") or 0)
    outcome = read_outcome(store, namespace, name, attempt) if attempt >= 1 else None
    exc: BaseException | None = None
    if outcome is not None and outcome.exception_ref:
        exc = read_exception(store, outcome.exception_ref)
    if exc is None and state_name == "TimedOut":
        exc = TaskRunTimeoutError(message or f"TaskRun {name} exceeded its timeout")
    kind = {"Crashed": StateType.CRASHED, "Cancelled": StateType.CANCELLED}.get(
        state_name, StateType.FAILED)
    return State(kind, name=state_name, message=message, data=exc)


def result_ref(store: ResultStore, namespace: str, name: str, ref: str, cache_key: str | None,
               status: Mapping[str, Any]) -> ResultRef:
    """The stored value ``ref`` with its serializer: the run's cache record's for a cached
    value, else its attempt's outcome's, else pickle (the default)."""
    if ref.startswith("cache/") and cache_key:
        try:
            record = CacheRecord.from_json(store.get(cache_record_key(cache_key))).result
        except Exception:  # noqa: BLE001 - fall back to the outcome / default
            pass
        else:
            if record.key == ref:
                return record
    attempt = int(status.get("attempt") or 0)
    if attempt >= 1:
        outcome = read_outcome(store, namespace, name, attempt)
        if outcome is not None and outcome.serializer:
            return ResultRef(ref, outcome.serializer)
    return ResultRef(ref, "pickle")


def transient_state(name: str, status: Mapping[str, Any]) -> State[Any]:
    """The future's state for a TaskRun seen in the non-final state ``name``."""
    message = status.get("message")
    if name == "AwaitingRetry":
        return AwaitingRetry(message=message)
    if name == "Retrying":
        return Retrying(message=message)
    if name == "Running":
        return Running(message=message)
    return Pending(message=message)


def safely(build: Callable[[], State[Any]], name: str) -> State[Any]:
    """``build()``, or Crashed with the reason when reading the result failed."""
    try:
        return build()
    except Exception as exc:  # noqa: BLE001 - the future must resolve, with the reason

        return Crashed(message=f"TaskRun {name} finished, but its result could not be read: "
                               f"{type(exc).__name__}: {exc}", data=exc)
