"""Typed builders of a run resource's status: the fields the operator patches (state, state
type, message, end time, duration) and the entries of a run's history, in the camelCase wire
form of ``TaskRunStatus``/``FlowRunStatus`` (``resources``). Pure: times come in as arguments.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict

from flowpod._contract.states import StateName, state_type_of

__all__ = [
    "FinalFields",
    "HistoryEntry",
    "StateFields",
    "final_fields",
    "format_duration",
    "history_entry",
    "iso",
    "state_fields",
]


class _HistoryEntryRequired(TypedDict):
    state: str
    type: str
    timestamp: str
    attempt: int


class HistoryEntry(_HistoryEntryRequired, total=False):
    """One ``status.history`` item (``StateTransition`` on the wire)."""

    message: str
    reason: str


class StateFields(TypedDict):
    """The status fields that say which state a run is in, and why (a new state clears an old
    reason)."""

    state: str
    stateType: str
    message: str | None
    reason: str | None


class FinalFields(TypedDict):
    endTime: str
    duration: str
    nextRetryAt: None
"""The status fields a run gets when it ends."""


def format_duration(seconds: float) -> str:
    """A short human-readable duration for the printer column: '0.4s', '12s', '1m3s', '2h5m'."""
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m"


def iso(moment: datetime) -> str:
    """A status timestamp: ISO 8601 in UTC with a ``Z``, as Kubernetes writes them."""
    return moment.isoformat().replace("+00:00", "Z")


def history_entry(
    state: StateName, at: datetime, attempt: int, message: str | None, reason: str | None = None
) -> HistoryEntry:
    """The history item for entering ``state`` at ``at`` during ``attempt``."""
    entry = HistoryEntry(
        state=state.value, type=state_type_of(state).value, timestamp=iso(at), attempt=attempt
    )
    if message:
        entry["message"] = message
    if reason:
        entry["reason"] = reason
    return entry


def state_fields(state: StateName, message: str | None, reason: str | None = None) -> StateFields:
    """The status fields of a run now in ``state``."""
    return StateFields(state=state.value, stateType=state_type_of(state).value, message=message,
                       reason=reason)


def final_fields(started: datetime, now: datetime) -> FinalFields:
    """The status fields of a run that ends ``now`` after starting at ``started``."""
    return {
        "endTime": iso(now),
        "duration": format_duration((now - started).total_seconds()),
        "nextRetryAt": None,
    }
