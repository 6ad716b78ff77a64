"""The state vocabulary of a run: the kinds of state (``StateType``), the names a run's state has
on the wire (``StateName``: the TaskRun/FlowRun status, the pod's outcome record), and which of
them are final.

The engine's ``State`` objects (``flowpod.states``), the resource models, the pod program and the
operator all speak these words; this is their only definition.
"""

from __future__ import annotations

import enum

__all__ = [
    "FINAL_STATES",
    "StateName",
    "StateType",
    "outcome_state",
    "state_type_of",
]


class StateType(enum.StrEnum):
    """The kind of a state: what the engine and the operator act on (names are only for display)."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


class StateName(enum.StrEnum):
    """A run's state, named as in Prefect."""

    PENDING = "Pending"
    RUNNING = "Running"
    AWAITING_RETRY = "AwaitingRetry"
    RETRYING = "Retrying"
    COMPLETED = "Completed"
    CACHED = "Cached"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"
    CRASHED = "Crashed"
    CANCELLED = "Cancelled"


FINAL_STATES: frozenset[StateName] = frozenset(
    {StateName.COMPLETED, StateName.CACHED, StateName.FAILED, StateName.TIMED_OUT,
     StateName.CRASHED, StateName.CANCELLED}
)
"""A TaskRun or FlowRun in one of these states has ended for good (a StrEnum, so plain strings
from a watched object's status compare equal)."""

_OUTCOME_FAILED_STATES = {
    "Failed": StateName.FAILED, "TimedOut": StateName.TIMED_OUT, "Crashed": StateName.CRASHED,
}


def outcome_state(word: str) -> StateName:
    """The run state an attempt's outcome record stands for: ``Completed`` or ``Cached`` is
    Completed, ``Failed``/``TimedOut``/``Crashed`` themselves, any other word Crashed."""
    if word in ("Completed", "Cached"):
        return StateName.COMPLETED
    return _OUTCOME_FAILED_STATES.get(word, StateName.CRASHED)

_STATE_TYPES: dict[StateName, StateType] = {
    StateName.PENDING: StateType.PENDING,
    StateName.RUNNING: StateType.RUNNING,
    StateName.AWAITING_RETRY: StateType.SCHEDULED,
    StateName.RETRYING: StateType.RUNNING,
    StateName.COMPLETED: StateType.COMPLETED,
    StateName.CACHED: StateType.COMPLETED,
    StateName.FAILED: StateType.FAILED,
    StateName.TIMED_OUT: StateType.FAILED,
    StateName.CRASHED: StateType.CRASHED,
    StateName.CANCELLED: StateType.CANCELLED,
}


def state_type_of(name: StateName | str) -> StateType:
    """The Prefect state type of a state name (``"AwaitingRetry"`` -> ``SCHEDULED``)."""
    return _STATE_TYPES[StateName(name)]
