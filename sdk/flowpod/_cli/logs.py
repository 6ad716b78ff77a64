"""``flowpod logs``: a FlowRun's flow pod and task pods, one stream merged by time.

    flowpod logs etl-x7k2qp [--task NAME] [--tail N] [--timestamps] [-f]

Each attempt's log comes from the result store once its pod uploaded it (the pod may be gone),
else from the API server while the pod exists. Lines are merged by real time: live logs are
asked for with ``timestamps=true`` (the kubelet's RFC3339 stamp of each line); stored logs carry
the pod program's own ``HH:MM:SS.mmm`` (``flowpod.logging.LOG_FORMAT``, in the pod's clock,
UTC in a container) and get their date from the attempt's start in the run's history, rolling
over to the next day when the clock goes back past midnight. A line without a time (a
traceback) keeps the time of the line before it. ``-f`` prints what exists, then follows the
running pods and the task pods that appear, until the FlowRun is final.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from flowpod._cli import access
from flowpod._contract.labels import FLOWRUN_LABEL, label_value

if TYPE_CHECKING:
    from flowpod._kube.flowrun_api import FlowRunApi
    from flowpod._storage import ResultStore

__all__ = ["LogSource", "collect_sources", "interleave_logs", "logs_command", "parse_rfc3339"]

_CLOCK = re.compile(r"^(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?\b")
_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2}) ?")
_POLL_SECONDS = 2.0  # how often -f looks for new task pods and the run's end
_DRAIN_SECONDS = 10.0
_STORE_READS = 3  # after the run is final, how long -f waits for open streams to end


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
        for stamp, line in source.lines:
            current = stamp or current
            shown = f"{_stamp(current)} {line}" if timestamps else line
            keyed.append((current, index, len(keyed), f"{source.prefix} | {shown}"))
    keyed.sort()
    return [line for *_, line in keyed]


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _stored_log(store: ResultStore | None, namespace: str, name: str, attempt: int) -> str | None:
    if store is None:
        return None
    from flowpod._contract.keys import log_key
    from flowpod.exceptions import ResultNotFound

    try:
        return store.get(log_key(namespace, name, attempt)).decode("utf-8", "replace")
    except ResultNotFound:
        return None


@dataclass(frozen=True)
class _Attempt:
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


def _parse_time(stamp: Any) -> datetime:
    return access.parse_time(stamp) or datetime.now(UTC)


def _attempts_of(obj: Mapping[str, Any], prefix: str, least: int, anchor: Any) -> list[_Attempt]:
    """The object's attempts (at least ``least``), each dated from its history; ``anchor``
    dates an attempt without history or times (the FlowRun's creation, at worst)."""
    status = obj.get("status") or {}
    seen = [int(entry.get("attempt") or 0) for entry in status.get("history") or []]
    current = int(status.get("attempt") or 0)
    count = max([current, *seen, least])
    name = str(obj["metadata"]["name"])
    created = obj["metadata"].get("creationTimestamp") or anchor
    return [_Attempt(name, prefix if count == 1 else f"{prefix} #{attempt}", attempt,
                     str(status["pod"]) if attempt == current and status.get("pod") else None,
                     _start_of(status, attempt, created))
            for attempt in range(1, count + 1)]


def _task_matches(task: Mapping[str, Any], wanted: str) -> bool:
    spec = task.get("spec") or {}
    return wanted in (spec.get("taskName"), spec.get("runName"), task["metadata"].get("name"))


def attempts_to_show(api: FlowRunApi, namespace: str, flowrun: Mapping[str, Any],
                     task: str | None) -> list[_Attempt]:
    """Every attempt of the flow pod (unless ``task``) and of the FlowRun's task runs."""
    name = str(flowrun["metadata"]["name"])
    found: list[_Attempt] = []
    anchor = flowrun["metadata"].get("creationTimestamp")
    if task is None:  # the flow pod has an attempt from the start (its log may be stored)
        label = str((flowrun.get("spec") or {}).get("flowName") or name)
        found += _attempts_of(flowrun, f"flow {label}", 1, anchor)
    for taskrun in api.list_objects(namespace, "taskruns", f"{FLOWRUN_LABEL}={label_value(name)}"):
        if task is None or _task_matches(taskrun, task):
            prefix = str((taskrun.get("spec") or {}).get("runName") or taskrun["metadata"]["name"])
            found += _attempts_of(taskrun, prefix, 0, anchor)
    return found


def collect_sources(api: FlowRunApi, store: ResultStore | None, namespace: str,
                    attempts: Iterable[_Attempt], tail: int | None = None) -> list[LogSource]:
    """Each attempt's log: the stored one when its pod uploaded it, else the live pod's."""
    sources = []
    for attempt in attempts:
        text = _stored_log(store, namespace, attempt.run, attempt.attempt)
        if text is not None:
            source = LogSource.stored(attempt.prefix, text, attempt.start)
            source.stored_as = (attempt.run, attempt.attempt)
            sources.append(source)
        elif attempt.pod:
            live = api.pod_log(namespace, attempt.pod, timestamps=True, tail_lines=tail)
            if live:
                sources.append(LogSource.live(attempt.prefix, live))
    return [source for source in sources if source.lines]


_EXAMPLES = """
\b
Examples:
  # Everything a FlowRun's pods logged, merged by time
  flowpod logs etl-x7k2qp
\b
  # Only the task 'load', its last 50 lines, with RFC3339 times
  flowpod logs etl-x7k2qp --task load --tail 50 --timestamps
\b
  # Follow the run until it ends, picking up new task pods as they start
  flowpod logs -f etl-x7k2qp
"""


@click.command("logs", short_help="Print the logs of a FlowRun's pods, merged by time.",
               epilog=_EXAMPLES)
@click.argument("flowrun")
@access.namespace_option
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing new lines, from new task pods too, until the run is final.")
@click.option("--task", "task", default=None, metavar="NAME",
              help="Only the runs of this task (its name, or one run's name).")
@click.option("--tail", type=click.IntRange(min=0), default=None, metavar="N",
              help="Only the last N lines (of the merged log).")
@click.option("--timestamps", is_flag=True, help="Start each line with its RFC3339 time.")
def logs_command(flowrun: str, namespace: str | None, follow: bool, task: str | None,
                 tail: int | None, timestamps: bool) -> None:
    """Print the logs of a FlowRun's flow pod and task pods, interleaved by time.

    Logs of finished attempts come from the result store (set FLOWPOD_S3_* as for submit);
    those of running pods from the cluster."""
    api = access.make_api()
    try:
        ns = access.namespace_of(api, namespace)
        obj = api.get(ns, "flowruns", flowrun)
        store = access.make_store((obj.get("spec") or {}).get("storage"))
        attempts = attempts_to_show(api, ns, obj, task)
        sources = collect_sources(api, store, ns, attempts, tail)
    except Exception as exc:  # noqa: BLE001 - shown as the API's answer
        raise access.api_error(exc) from None
    if store is None:
        click.echo("Note: no result store configured (FLOWPOD_S3_BUCKET / FLOWPOD_S3_ENDPOINT): "
                   "only logs of pods that still run are shown", err=True)
    lines = interleave_logs(sources, timestamps)
    if tail is not None:
        lines = lines[-tail:] if tail else []
    for line in lines:
        click.echo(line)
    if follow:
        _Follower(api, store, ns, flowrun, task, timestamps, sources).run()
    elif not sources:
        click.echo(f"No logs for flowrun {ns}/{flowrun} yet.", err=True)


class _Follower:
    """``logs -f``: one thread per running pod streams its lines into a queue the main thread
    prints; every few seconds the FlowRun's task runs are listed again for new pods, and
    attempts whose pod was gone before it could be followed are printed from the store."""

    def __init__(self, api: FlowRunApi, store: ResultStore | None, namespace: str,
                 flowrun: str, task: str | None, timestamps: bool,
                 printed: list[LogSource]) -> None:
        self.api, self.store, self.namespace = api, store, namespace
        self.flowrun, self.task, self.timestamps = flowrun, task, timestamps
        self.lines: queue.Queue[tuple[str, datetime | None, str] | None] = queue.Queue()
        # What the first print showed: a followed pod skips lines up to its last time there.
        self.shown_until: dict[str, datetime] = {}
        for source in printed:
            stamps = [stamp for stamp, _ in source.lines if stamp is not None]
            if stamps:
                self.shown_until[source.prefix] = max(stamps)
        # Attempts printed whole, or being followed: never shown again.
        self.done = {source.stored_as for source in printed if source.stored_as}
        self.store_reads: dict[tuple[str, int], int] = {}
        self.open = 0

    def run(self) -> None:
        ended_at: float | None = None
        try:
            while True:
                final = self._poll()
                if final and ended_at is None:
                    ended_at = time.monotonic()
                if ended_at is not None and (self.open == 0 or
                                             time.monotonic() - ended_at > _DRAIN_SECONDS):
                    self._print_pending(0)
                    return
                self._print_pending(_POLL_SECONDS)
        except KeyboardInterrupt:
            return
        except Exception as exc:  # noqa: BLE001 - shown as the API's answer
            raise access.api_error(exc) from None

    def _poll(self) -> bool:
        from flowpod._contract.states import FINAL_STATES

        obj = self.api.get(self.namespace, "flowruns", self.flowrun)
        for attempt in attempts_to_show(self.api, self.namespace, obj, self.task):
            key = (attempt.run, attempt.attempt)
            if key in self.done:
                continue
            if attempt.pod:
                stream = self.api.follow_pod_log(self.namespace, attempt.pod)
                if stream is None:
                    continue  # not started yet: next poll
                self.done.add(key)
                self.open += 1
                threading.Thread(target=self._pump, args=(attempt.prefix, stream),
                                 daemon=True).start()
                continue
            # A pod that ended between two polls: its stored log, looked for a few times only
            # (an attempt whose pod never uploaded one must not cost a read every poll).
            reads = self.store_reads[key] = self.store_reads.get(key, 0) + 1
            if reads > _STORE_READS:
                continue
            text = _stored_log(self.store, self.namespace, attempt.run, attempt.attempt)
            if text is not None:
                self.done.add(key)
                for line in interleave_logs([LogSource.stored(attempt.prefix, text,
                                                              attempt.start)], self.timestamps):
                    self.lines.put((attempt.prefix, None, line))
        state = (obj.get("status") or {}).get("state")
        return state in FINAL_STATES

    def _pump(self, prefix: str, stream: Iterator[str]) -> None:
        skip_until = self.shown_until.get(prefix)
        try:
            for raw in stream:
                parsed = parse_rfc3339(raw)
                stamp, text = parsed if parsed else (None, raw)
                if skip_until is not None and stamp is not None and stamp <= skip_until:
                    continue
                skip_until = None  # past what was shown: print everything from here on
                shown = f"{_stamp(stamp)} {text}" if self.timestamps and stamp else text
                self.lines.put((prefix, stamp, f"{prefix} | {shown}"))
        except Exception:  # noqa: BLE001 - the pod went away mid-stream: its stream ends
            pass
        finally:
            self.lines.put(None)

    def _print_pending(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                item = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            if item is None:
                self.open -= 1
                if self.open == 0 and wait == 0:
                    continue
            else:
                click.echo(item[2])
