"""States of task and flow runs, their constructors, and the pure rules deriving one from another.

A ``State`` is a small immutable-by-convention value: a ``StateType`` (what the engine acts on), a
display ``name`` (``Cached`` is a COMPLETED state, ``TimedOut`` a FAILED one), a message, the data
(the run's return value or its exception) and a timestamp. Runs keep every state they pass through
in their history, so states are cheap (slots, a float timestamp turned into a datetime only on
demand).

The functions at the bottom are the state-transition rules shared by the local engine and the
Kubernetes operator: how an exception becomes a failed state, how a flow's return value becomes its
final state, how many states of an iterable failed.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from flowpod._contract.states import StateType
from flowpod.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    UnfinishedRun,
)

__all__ = [
    "AwaitingRetry",
    "Cached",
    "Cancelled",
    "Cancelling",
    "Completed",
    "Crashed",
    "Failed",
    "Late",
    "NotReady",
    "Paused",
    "Pending",
    "Retrying",
    "Running",
    "Scheduled",
    "State",
    "StateDetails",
    "StateType",
    "TERMINAL_STATES",
    "TimedOut",
    "exception_to_failed_state",
    "format_exception",
    "get_state_exception",
    "is_state",
    "is_state_iterable",
    "raise_state_exception",
    "return_value_to_state",
]

R = TypeVar("R")


TERMINAL_STATES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)
_FAILURE_TYPES = frozenset({StateType.FAILED, StateType.CRASHED, StateType.CANCELLED})
_DEFAULT_NAMES = {t: t.value.title() for t in StateType}


class StateDetails:
    """Run references and scheduling data attached to a state."""

    __slots__ = ("task_run_id", "flow_run_id", "scheduled_time", "cache_key", "cache_expiration")

    def __init__(
        self,
        task_run_id: Any = None,
        flow_run_id: Any = None,
        scheduled_time: datetime.datetime | None = None,
        cache_key: str | None = None,
        cache_expiration: datetime.datetime | None = None,
    ) -> None:
        self.task_run_id = task_run_id
        self.flow_run_id = flow_run_id
        self.scheduled_time = scheduled_time
        self.cache_key = cache_key
        self.cache_expiration = cache_expiration

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"StateDetails({fields})"


class State(Generic[R]):
    """One state of a run. ``result()`` gives a completed state's data or raises the failure."""

    __slots__ = ("type", "name", "message", "data", "_ts", "_details")

    def __init__(
        self,
        type: StateType,
        name: str | None = None,
        message: str | None = None,
        data: Any = None,
        timestamp: float | datetime.datetime | None = None,
        state_details: StateDetails | None = None,
    ) -> None:
        self.type = type
        self.name = name if name is not None else _DEFAULT_NAMES[type]
        self.message = message
        self.data = data
        if timestamp is None:
            self._ts = time.time()
        elif isinstance(timestamp, datetime.datetime):
            self._ts = timestamp.timestamp()
        else:
            self._ts = float(timestamp)
        self._details = state_details

    @property
    def timestamp(self) -> datetime.datetime:
        """When the state was created (timezone-aware UTC)."""
        return datetime.datetime.fromtimestamp(self._ts, tz=datetime.UTC)

    @property
    def state_details(self) -> StateDetails:
        if self._details is None:
            self._details = StateDetails()
        return self._details

    # The predicates mirror the state types one to one.
    def is_scheduled(self) -> bool:
        return self.type is StateType.SCHEDULED

    def is_pending(self) -> bool:
        return self.type is StateType.PENDING

    def is_running(self) -> bool:
        return self.type is StateType.RUNNING

    def is_completed(self) -> bool:
        return self.type is StateType.COMPLETED

    def is_failed(self) -> bool:
        return self.type is StateType.FAILED

    def is_crashed(self) -> bool:
        return self.type is StateType.CRASHED

    def is_cancelled(self) -> bool:
        return self.type is StateType.CANCELLED

    def is_cancelling(self) -> bool:
        return self.type is StateType.CANCELLING

    def is_paused(self) -> bool:
        return self.type is StateType.PAUSED

    def is_final(self) -> bool:
        return self.type in TERMINAL_STATES

    def result(self, raise_on_failure: bool = True, fetch: bool = True) -> Any:
        """The run's return value; for a failed, crashed or cancelled state, raise its exception.

        With ``raise_on_failure=False`` the exception is returned instead of raised. A state that is
        not final has no result: UnfinishedRun is raised (NotReady raises the upstream error).
        """
        if self.type is StateType.COMPLETED:
            return self.data
        if self.type in _FAILURE_TYPES:
            exc = get_state_exception(self)
            if raise_on_failure:
                raise exc
            return exc
        if isinstance(self.data, BaseException):
            if raise_on_failure:
                raise self.data
            return self.data
        exc = UnfinishedRun(f"Run is in {self.type.value} state, its result is not available.")
        if raise_on_failure:
            raise exc
        return exc

    def copy(self, **changes: Any) -> State[R]:
        """A new state with the same fields except ``changes`` (and a fresh timestamp)."""
        fields: dict[str, Any] = {
            "type": self.type,
            "name": self.name,
            "message": self.message,
            "data": self.data,
            "state_details": self._details,
        }
        fields.update(changes)
        return State(**fields)

    def __str__(self) -> str:
        shown = []
        if self.message:
            shown.append(repr(self.message))
        if self.name.lower() != self.type.value.lower():
            shown.append(f"type={self.type.value}")
        return f"{self.name}({', '.join(shown)})"

    def __repr__(self) -> str:
        data = self.data
        result = (
            type(data).__name__ if isinstance(data, BaseException) else _short_repr(data)
        )
        return (
            f"{self.name}(message={self.message!r}, type={self.type.value}, result={result})"
        )


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _make(type_: StateType, default_name: str, kwargs: dict[str, Any]) -> State[Any]:
    kwargs.setdefault("name", default_name)
    return State(type_, **kwargs)


def Scheduled(scheduled_time: datetime.datetime | None = None, **kwargs: Any) -> State[Any]:
    """A run waiting for its scheduled time."""
    details = kwargs.pop("state_details", None) or StateDetails()
    details.scheduled_time = scheduled_time or datetime.datetime.now(datetime.UTC)
    return _make(StateType.SCHEDULED, "Scheduled", {"state_details": details, **kwargs})


def AwaitingRetry(scheduled_time: datetime.datetime | None = None, **kwargs: Any) -> State[Any]:
    """A failed attempt that will be retried at ``scheduled_time`` (SCHEDULED type)."""
    kwargs.setdefault("name", "AwaitingRetry")
    return Scheduled(scheduled_time, **kwargs)


def Late(scheduled_time: datetime.datetime | None = None, **kwargs: Any) -> State[Any]:
    kwargs.setdefault("name", "Late")
    return Scheduled(scheduled_time, **kwargs)


def Pending(**kwargs: Any) -> State[Any]:
    return _make(StateType.PENDING, "Pending", kwargs)


def NotReady(**kwargs: Any) -> State[Any]:
    """A run that did not start because an upstream run did not complete (PENDING type)."""
    return _make(StateType.PENDING, "NotReady", kwargs)


def Running(**kwargs: Any) -> State[Any]:
    return _make(StateType.RUNNING, "Running", kwargs)


def Retrying(**kwargs: Any) -> State[Any]:
    """The running state of a retry attempt (RUNNING type)."""
    return _make(StateType.RUNNING, "Retrying", kwargs)


def Completed(**kwargs: Any) -> State[Any]:
    return _make(StateType.COMPLETED, "Completed", kwargs)


def Cached(**kwargs: Any) -> State[Any]:
    """A completed run whose result came from the cache (COMPLETED type)."""
    return _make(StateType.COMPLETED, "Cached", kwargs)


def Failed(**kwargs: Any) -> State[Any]:
    return _make(StateType.FAILED, "Failed", kwargs)


def TimedOut(**kwargs: Any) -> State[Any]:
    """A run stopped at its timeout (FAILED type)."""
    return _make(StateType.FAILED, "TimedOut", kwargs)


def Crashed(**kwargs: Any) -> State[Any]:
    return _make(StateType.CRASHED, "Crashed", kwargs)


def Cancelled(**kwargs: Any) -> State[Any]:
    return _make(StateType.CANCELLED, "Cancelled", kwargs)


def Cancelling(**kwargs: Any) -> State[Any]:
    return _make(StateType.CANCELLING, "Cancelling", kwargs)


def Paused(**kwargs: Any) -> State[Any]:
    return _make(StateType.PAUSED, "Paused", kwargs)


# -- pure transition rules ---------------------------------------------------------------------


def is_state(obj: object) -> bool:
    return isinstance(obj, State)


def is_state_iterable(obj: object) -> bool:
    """True for a non-empty list, tuple or set made only of states."""
    if isinstance(obj, list | tuple | set | frozenset) and obj:
        return all(isinstance(item, State) for item in obj)
    return False


def format_exception(exc: BaseException) -> str:
    """``ValueError: bad!`` (the exception's type name, then its text when it has one)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def exception_to_failed_state(
    exc: BaseException, message: str = "", *, name: str = "Failed", **kwargs: Any
) -> State[Any]:
    """The failed state for ``exc``, its message prefixed by ``message``."""
    prefix = message + " " if message and not message.endswith(" ") else message
    return Failed(name=name, message=prefix + format_exception(exc), data=exc, **kwargs)


def get_state_exception(state: State[Any]) -> BaseException:
    """The exception a failed, crashed or cancelled state stands for."""
    data = state.data
    if isinstance(data, BaseException):
        return data
    if isinstance(data, State):
        return get_state_exception(data)
    if is_state_iterable(data):
        for inner in data:
            if inner.type in _FAILURE_TYPES:
                return get_state_exception(inner)
    message = state.message or f"Run ended in state {state.name}."
    if state.type is StateType.CRASHED:
        return CrashedRun(message)
    if state.type is StateType.CANCELLED:
        return CancelledRun(message)
    return FailedRun(message)


def raise_state_exception(state: State[Any]) -> None:
    """Raise the state's exception if it is a failure; do nothing otherwise."""
    if state.type in _FAILURE_TYPES:
        raise get_state_exception(state)


def return_value_to_state(value: Any) -> State[Any]:
    """A flow's final state from what its function returned.

    A state is taken as is; a collection of states is aggregated (any cancelled -> Cancelled, any
    failed or crashed -> Failed with "n/total states failed.", any not final -> Pending, else
    Completed("All states completed.")) with the collection as data; anything else -> Completed.
    Futures must already be resolved to their states by the caller.
    """
    if isinstance(value, State):
        return value.copy()
    if not is_state_iterable(value):
        return Completed(data=value)
    states: list[State[Any]] = list(value)
    total = len(states)
    cancelled = sum(1 for s in states if s.type is StateType.CANCELLED)
    failed = sum(1 for s in states if s.type in (StateType.FAILED, StateType.CRASHED))
    unfinished = sum(1 for s in states if not s.is_final())
    if cancelled:
        return Cancelled(message=f"{cancelled}/{total} states cancelled.", data=value)
    if failed:
        return Failed(message=f"{failed}/{total} states failed.", data=value)
    if unfinished:
        return Pending(message=f"{unfinished}/{total} states are not final.", data=value)
    return Completed(message="All states completed.", data=value)


def count_by_type(states: Iterable[State[Any]]) -> dict[StateType, int]:
    """How many of ``states`` there are of each type (for summaries and the operator's status)."""
    counts: dict[StateType, int] = {}
    for state in states:
        counts[state.type] = counts.get(state.type, 0) + 1
    return counts
