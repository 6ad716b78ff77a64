"""What ``submit --wait`` and ``cancel --wait`` show while a FlowRun goes on.

``RunProgress`` is an ``on_change`` for ``FlowRunHandle.wait``; it takes each new version of the
FlowRun object and shows it one of two ways:

- on a terminal, one live block redrawn in place (rich's ``Live``, a few times a second so the
  elapsed time moves): the state, the operator's reason while the run is stuck, the task runs
  counted by state, the names of the running and the failed ones, the elapsed time;
- elsewhere (CI logs, a pipe), plain lines: one at once when the state or the reason changes,
  and one for changed counts at most every ``interval`` seconds, so a 1,000-task map prints a
  line every few seconds rather than one per task. ``close`` prints the last counts if held back.

The names of running and failed task runs need a list of the run's TaskRuns: it is read at most
every few seconds, and only for the live block.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import click

from flowpod._cli.access import parse_time

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.live import Live

__all__ = ["RunProgress", "counts_text", "elapsed_text"]

_FINAL = ("Completed", "Failed", "Crashed", "Cancelled", "TimedOut")
_COUNT_LABELS = (("running", "running"), ("pending", "pending"),
                 ("awaitingRetry", "awaiting retry"), ("completed", "completed"),
                 ("cached", "cached"), ("failed", "failed"), ("timedOut", "timed out"),
                 ("crashed", "crashed"), ("cancelled", "cancelled"))
_BAD = ("Failed", "Crashed", "TimedOut")
_TASK_LIST_SECONDS = 3.0
_NAMES_SHOWN = 5

TaskLister = Callable[[], Sequence[Mapping[str, Any]]]


def counts_text(obj: Mapping[str, Any]) -> str:
    """'12 total: 3 running, 8 completed, 1 failed' from the FlowRun's status.taskRuns."""
    counts = (obj.get("status") or {}).get("taskRuns") or {}
    total = int(counts.get("total") or 0)
    parts = [f"{int(counts.get(key) or 0)} {label}" for key, label in _COUNT_LABELS
             if int(counts.get(key) or 0)]
    return f"{total} total" + (f": {', '.join(parts)}" if parts else "")


def elapsed_text(seconds: float) -> str:
    whole = max(0, int(seconds))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _started(obj: Mapping[str, Any]) -> datetime | None:
    status, meta = obj.get("status") or {}, obj.get("metadata") or {}
    return parse_time(status.get("startTime") or meta.get("creationTimestamp"))


def _names(tasks: Sequence[Mapping[str, Any]], states: Sequence[str]) -> list[str]:
    found = []
    for task in tasks:
        status = task.get("status") or {}
        if status.get("state") in states:
            name = str((task.get("spec") or {}).get("runName") or task["metadata"]["name"])
            reason = status.get("reason")
            found.append(f"{name} ({reason})" if reason and states is _BAD else name)
    return sorted(found)


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    more = len(names) - _NAMES_SHOWN
    return shown + (f" and {more} more" if more > 0 else "")


class RunProgress:
    """Shows a FlowRun's progress: a live block on a terminal, change lines elsewhere."""

    def __init__(self, name: str, namespace: str, *, tasks: TaskLister | None = None,
                 live: bool | None = None, interval: float = 5.0,
                 stream: TextIO | None = None) -> None:
        self.name, self.namespace = name, namespace
        self.tasks, self.interval = tasks, interval
        self.stream = stream or sys.stdout
        self.obj: Mapping[str, Any] = {}
        self.task_objs: Sequence[Mapping[str, Any]] = ()
        self.listed_at = 0.0
        self.began = time.monotonic()
        # Plain lines: what was shown last, and when counts were last printed.
        self.last_key: tuple[str, str | None] | None = None
        self.last_counts: str | None = None
        self.held: str | None = None
        self.printed_at = 0.0
        self.console: Console | None = None
        self.live: Live | None = None
        if live is None or live:
            from rich.console import Console

            console = Console(file=self.stream, highlight=False)
            if live or (console.is_terminal and not console.is_dumb_terminal):
                self.console = console

    # -- on_change ---------------------------------------------------------------------------

    def __call__(self, obj: Mapping[str, Any]) -> None:
        self.obj = obj
        if self.console is not None:
            self._update_live()
        else:
            self._print_change()

    def close(self) -> None:
        """Stop the live block (leaving its last state on screen), or print held-back counts."""
        if self.live is not None:
            self.live.update(self.render(), refresh=True)
            self.live.stop()
            self.live = None
        elif self.held is not None:
            self._echo(self.held)
            self.held = None

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the live block ----------------------------------------------------------------------

    def _update_live(self) -> None:
        now = time.monotonic()
        if self.tasks is not None and now - self.listed_at >= _TASK_LIST_SECONDS:
            self.listed_at = now
            try:
                self.task_objs = self.tasks()
            except Exception:  # noqa: BLE001 - names are a nicety; counts come from the run
                pass
        if self.live is None:
            from rich.live import Live

            assert self.console is not None
            self.live = Live(self, console=self.console, refresh_per_second=4,
                             transient=False, redirect_stdout=False, redirect_stderr=False)
            self.live.start()
        else:
            self.live.refresh()

    def __rich__(self) -> RenderableType:
        return self.render()

    def render(self) -> RenderableType:
        """The block: a grid of labels and values (rich renders it, redrawn in place)."""
        from rich.table import Table
        from rich.text import Text

        status = self.obj.get("status") or {}
        state = str(status.get("state") or "Pending")
        colour = {"Completed": "green", "Running": "cyan"}.get(
            state, "red" if state in _BAD else "yellow")
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_row("FlowRun", f"{self.namespace}/{self.name}")
        grid.add_row("State", Text(state, style=colour))
        reason = status.get("reason")
        if reason and state != "Completed":
            message = " ".join(str(status.get("message") or "").split())
            grid.add_row("Reason", Text(f"{reason}" + (f": {message}" if message else ""),
                                        style="yellow" if state not in _FINAL else colour))
        grid.add_row("Task runs", counts_text(self.obj))
        running = _names(self.task_objs, ("Running",))
        if running:
            grid.add_row("Running", _listed(running))
        failed = _names(self.task_objs, _BAD)
        if failed:
            grid.add_row("Failed", Text(_listed(failed), style="red"))
        grid.add_row("Elapsed", self._elapsed())
        return grid

    def _elapsed(self) -> str:
        status = self.obj.get("status") or {}
        started = _started(self.obj)
        if status.get("state") in _FINAL and status.get("duration"):
            return str(status["duration"])
        if started is not None:
            return elapsed_text((datetime.now(UTC) - started).total_seconds())
        return elapsed_text(time.monotonic() - self.began)

    # -- plain lines -------------------------------------------------------------------------

    def _echo(self, line: str) -> None:
        click.echo(line, file=self.stream)

    def _print_change(self) -> None:
        from flowpod._kube.submit import progress_line, reason_line

        status = self.obj.get("status") or {}
        key = (str(status.get("state") or "Pending"), reason_line(self.obj))
        counts = progress_line(self.obj)
        now = time.monotonic()
        if key != self.last_key:  # a new state or reason: shown at once, with the counts
            self.last_key = key
            self.held = None
            self._echo(counts)
            if key[1] is not None:
                self._echo(f"FlowRun {self.name} is {key[1]}")
            self.last_counts, self.printed_at = counts, now
        elif counts != self.last_counts:
            if now - self.printed_at >= self.interval:
                self._echo(counts)
                self.last_counts, self.printed_at, self.held = counts, now, None
            else:
                self.held = counts  # printed with the next change after the interval, or at end
