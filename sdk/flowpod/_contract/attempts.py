"""A run's attempts as spans of time, read from ``status.history``: the one reading of the
history that ``flowpod describe`` and the dashboard's timeline share.

The operator appends one entry per transition, each stamped with the attempt it belongs to:
``Pending``/``Retrying`` (n) when attempt n's pod is created, ``Running`` (n), then the attempt's
end (``Completed``, ``Failed``, ``TimedOut``, ``Crashed``, ``Cancelled``) and, when a retry
follows, ``AwaitingRetry`` (n) at the same time; the next attempt's first entry ends that wait.
A cache hit is one ``Cached`` entry of attempt 0 and no attempt at all.

Pure: history in, ``AttemptSpan``\\ s out (times as aware datetimes, ``end`` None while the
attempt runs).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowpod._contract.labels import attempt_pod_name, flow_pod_name
from flowpod._contract.states import FINAL_STATES

__all__ = ["AttemptSpan", "RetryWait", "attempt_pod", "attempt_spans", "parse_time",
           "retry_waits"]

_WAITING = "AwaitingRetry"


def parse_time(stamp: Any) -> datetime | None:
    """An RFC3339 time from the API (``...Z`` or with an offset) as an aware datetime; None
    when there is none or it does not parse."""
    if not stamp:
        return None
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
    try:
        found = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


@dataclass(frozen=True)
class AttemptSpan:
    """One attempt: when it started and ended and how it ended.

    ``state``/``reason``/``message`` are those of the attempt's own end (the ``TimedOut`` entry,
    not the ``AwaitingRetry`` that follows it); ``last_*`` are those of its last history entry,
    which is ``AwaitingRetry`` while the next attempt waits. ``end`` is None while the attempt
    is the run's current one and has not ended. ``waiting_since`` is when the retry backoff
    after this attempt began (None when no retry followed)."""

    number: int
    start: datetime | None
    end: datetime | None
    state: str
    reason: str | None
    message: str | None
    last_state: str
    last_reason: str | None
    last_message: str | None
    waiting_since: datetime | None = None

    @property
    def ongoing(self) -> bool:
        return self.end is None


@dataclass(frozen=True)
class RetryWait:
    """A retry backoff: from the failed attempt's end to the next attempt's first entry (None
    while it still waits)."""

    after: int
    start: datetime
    end: datetime | None


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def attempt_spans(status: Mapping[str, Any]) -> list[AttemptSpan]:
    """The attempts (numbered from 1) in ``status.history``, in order."""
    by_attempt: dict[int, list[Mapping[str, Any]]] = {}
    for entry in status.get("history") or ():
        attempt = int(entry.get("attempt") or 0)
        if attempt >= 1:
            by_attempt.setdefault(attempt, []).append(entry)
    current = int(status.get("attempt") or 0)
    spans = []
    for number in sorted(by_attempt):
        entries = by_attempt[number]
        last = entries[-1]
        ended = [entry for entry in entries if entry.get("state") != _WAITING] or entries
        own = ended[-1]
        last_state = str(last.get("state") or "")
        waiting = next((entry for entry in entries if entry.get("state") == _WAITING), None)
        ongoing = (number == current and last_state not in FINAL_STATES
                   and last_state != _WAITING)
        spans.append(AttemptSpan(
            number=number,
            start=parse_time(entries[0].get("timestamp")),
            end=None if ongoing else parse_time(own.get("timestamp")),
            state=str(own.get("state") or ""),
            reason=_text(own.get("reason")),
            message=_text(own.get("message")),
            last_state=last_state,
            last_reason=_text(last.get("reason")),
            last_message=_text(last.get("message")),
            waiting_since=parse_time(waiting.get("timestamp")) if waiting else None,
        ))
    return spans


def retry_waits(spans: Iterable[AttemptSpan]) -> list[RetryWait]:
    """The backoff gaps between attempts: each ends where the next attempt starts."""
    ordered = list(spans)
    waits = []
    for index, span in enumerate(ordered):
        if span.waiting_since is None:
            continue
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        waits.append(RetryWait(span.number, span.waiting_since,
                               following.start if following is not None else None))
    return waits


def attempt_pod(obj: Mapping[str, Any], attempt: int) -> str | None:
    """The pod of ``attempt`` of a TaskRun or FlowRun object: ``status.pod`` for the current
    one, earlier ones by the operator's naming; None before the first attempt."""
    status = obj.get("status") or {}
    if status.get("pod") and attempt == int(status.get("attempt") or 0):
        return str(status["pod"])
    if attempt < 1:
        return None
    name = str((obj.get("metadata") or {}).get("name") or "")
    return flow_pod_name(name, attempt) if obj.get("kind") == "FlowRun" else \
        attempt_pod_name(name, attempt)
