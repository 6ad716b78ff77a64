"""A FlowRun's logs, read for people: which attempts it had, where each attempt's log is, and
all of them merged into one stream by time. ``flowpod logs`` and the dashboard both read logs
this way.

Each attempt's log comes from the result store once its pod uploaded it (the pod may be gone),
else from the API server while the pod exists. Lines are merged by real time: live logs are
asked for with ``timestamps=true`` (the kubelet's RFC3339 stamp of each line); stored logs carry
the pod program's own ``HH:MM:SS.mmm`` (``flowpod.logging.LOG_FORMAT``, in the pod's clock,
UTC in a container) and get their date from the attempt's start in the run's history, rolling
over to the next day when the clock goes back past midnight. A line without a time (a
traceback) keeps the time of the line before it.

``attempts_to_show`` is pure (the caller lists the TaskRuns: the CLI asks the API server, the
dashboard reads its watched copy); ``collect_sources`` reads the store and, for running pods,
the API through ``pod_log`` (``FlowRunApi.pod_log`` or a wrapper that counts calls).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from flowpod._contract.attempts import parse_time

if TYPE_CHECKING:
    from flowpod._storage import ResultStore

__all__ = [
    "LogAttempt",
    "LogSource",
    "PodLog",
    "attempts_to_show",
    "collect_sources",
    "interleave_logs",
    "parse_rfc3339",
    "stamp",
    "stored_log",
]

PodLog = Callable[..., "str | None"]
"""``pod_log(namespace, pod, timestamps=True, tail_lines=N)``: a live pod's log, None if gone."""

_CLOCK = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\b")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2}) ?")


def parse_rfc3339(line: str) -> tuple[datetime, str] | None:
    """(time, rest of the line) for a line the kubelet stamped ('2026-11-24T04:00:03.1234Z
    text'); None for a line without a stamp. Nanoseconds are cut to microseconds."""
    found = _RFC3339.match(line)
    if found is None:
        return None
    base, fraction, zone = found.groups()
    micros = (fraction or "0")[:6].ljust(6, "0")
    stamp = datetime.fromisoformat(f"{base}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return stamp, line[found.end():]


def _clock_dates(lines: list[str], start: datetime) -> list[datetime | None]:
    """The real time of each line that starts with HH:MM:SS[.ffffff], dated from ``start``:
    the first on the day that puts it nearest ``start``, each later one on the day of the line
    before it, or the next day when the clock went back (midnight passed)."""
    found: list[datetime | None] = []
    last: datetime | None = None
    for line in lines:
        match = _CLOCK.match(line)
        if match is None:
            found.append(None)
            continue
        hours, minutes, seconds, fraction = match.groups()
        micros = int((fraction or "0").ljust(6, "0"))
        day = (last or start).replace(hour=int(hours), minute=int(minutes), second=int(seconds),
                                      microsecond=micros)
        if last is None:
            day = min((day + timedelta(days=shift) for shift in (-1, 0, 1)),
                      key=lambda candidate: abs((candidate - start).total_seconds()))
        elif day < last - timedelta(hours=1):  # the clock went back: midnight passed
            day += timedelta(days=1)
        found.append(day)
        last = day
    return found


@dataclass
class LogSource:
    """One attempt's log: where it is shown from (``prefix``) and its lines with times."""

    prefix: str
    lines: list[tuple[datetime | None, str]] = field(default_factory=list)
    stored_as: tuple[str, int] | None = None  # (run, attempt) of a log read whole from the store

    @classmethod
    def stored(cls, prefix: str, text: str, start: datetime) -> LogSource:
        lines = text.splitlines()
        return cls(prefix, list(zip(_clock_dates(lines, start), lines, strict=True)))

    @classmethod
    def live(cls, prefix: str, text: str) -> LogSource:
        source = cls(prefix)
        for line in text.splitlines():
            parsed = parse_rfc3339(line)
            source.lines.append(parsed if parsed else (None, line))
        return source


def interleave_logs(sources: Iterable[LogSource], timestamps: bool = False) -> list[str]:
    """The lines of every source merged by time, each as '<prefix> | <line>' (with
    ``timestamps``: '<prefix> | <RFC3339> <line>'); a line without a time stays after the line
    before it."""
    keyed: list[tuple[datetime, int, int, str]] = []
    floor = datetime.min.replace(tzinfo=UTC)
    for index, source in enumerate(sources):
        current = floor
        for when, line in source.lines:
            current = when or current
            shown = f"{stamp(current)} {line}" if timestamps else line
            keyed.append((current, index, len(keyed), f"{source.prefix} | {shown}"))
    keyed.sort()
    return [line for *_, line in keyed]


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def stored_log(store: ResultStore | None, namespace: str, name: str, attempt: int) -> str | None:
    if store is None:
        return None
    from flowpod._contract.keys import log_key
    from flowpod.exceptions import ResultNotFound

    try:
        return store.get(log_key(namespace, name, attempt)).decode("utf-8", "replace")
    except ResultNotFound:
        return None


@dataclass(frozen=True)
class LogAttempt:
    run: str  # the FlowRun's or TaskRun's name: the store key's run
    prefix: str
    attempt: int
    pod: str | None  # the pod while it is the run's current attempt
    start: datetime


def _start_of(status: Mapping[str, Any], attempt: int, fallback: Any) -> datetime:
    for entry in status.get("history") or []:
        if int(entry.get("attempt") or 0) == attempt and entry.get("timestamp"):
            return _parse_time(entry["timestamp"])
    return _parse_time(status.get("startTime") or fallback)


def _parse_time(value: Any) -> datetime:
    return parse_time(value) or datetime.now(UTC)


def _log_attempts(obj: Mapping[str, Any], prefix: str, least: int,
                  anchor: Any) -> list[LogAttempt]:
    """The object's attempts (at least ``least``), each dated from its history; ``anchor``
    dates an attempt without history or times (the FlowRun's creation, at worst)."""
    status = obj.get("status") or {}
    seen = [int(entry.get("attempt") or 0) for entry in status.get("history") or []]
    current = int(status.get("attempt") or 0)
    count = max([current, *seen, least])
    name = str(obj["metadata"]["name"])
    created = obj["metadata"].get("creationTimestamp") or anchor
    return [LogAttempt(name, prefix if count == 1 else f"{prefix} #{attempt}", attempt,
                     str(status["pod"]) if attempt == current and status.get("pod") else None,
                     _start_of(status, attempt, created))
            for attempt in range(1, count + 1)]


def _task_matches(task: Mapping[str, Any], wanted: str) -> bool:
    spec = task.get("spec") or {}
    return wanted in (spec.get("taskName"), spec.get("runName"), task["metadata"].get("name"))


def attempts_to_show(flowrun: Mapping[str, Any], taskruns: Iterable[Mapping[str, Any]],
                     task: str | None) -> list[LogAttempt]:
    """Every attempt of the flow pod (unless ``task``) and of ``taskruns`` (the FlowRun's task
    runs; those of ``task`` only when it is given: a task name, a run name or a TaskRun name)."""
    name = str(flowrun["metadata"]["name"])
    found: list[LogAttempt] = []
    anchor = flowrun["metadata"].get("creationTimestamp")
    if task is None:  # the flow pod has an attempt from the start (its log may be stored)
        label = str((flowrun.get("spec") or {}).get("flowName") or name)
        found += _log_attempts(flowrun, f"flow {label}", 1, anchor)
    for taskrun in taskruns:
        if task is None or _task_matches(taskrun, task):
            prefix = str((taskrun.get("spec") or {}).get("runName") or taskrun["metadata"]["name"])
            found += _log_attempts(taskrun, prefix, 0, anchor)
    return found


def collect_sources(pod_log: PodLog, store: ResultStore | None, namespace: str,
                    attempts: Iterable[LogAttempt], tail: int | None = None) -> list[LogSource]:
    """Each attempt's log: the stored one when its pod uploaded it, else the live pod's."""
    sources = []
    for attempt in attempts:
        text = stored_log(store, namespace, attempt.run, attempt.attempt)
        if text is not None:
            source = LogSource.stored(attempt.prefix, text, attempt.start)
            source.stored_as = (attempt.run, attempt.attempt)
            sources.append(source)
        elif attempt.pod:
            live = pod_log(namespace, attempt.pod, timestamps=True, tail_lines=tail)
            if live:
                sources.append(LogSource.live(attempt.prefix, live))
    return [source for source in sources if source.lines]
