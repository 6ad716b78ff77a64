"""The tally of a flow run's task runs: how many were created, and their final states by name.

A flow that maps 1,000 items logs three lines per task run; the one line a reader wants at the end
is the count of each outcome. Every task run created in a flow run is counted here, and counted
again when its final state is recorded (``TaskRun.finish``), whichever task runner ran it, so the
flow engine can log that line when the attempt ends. Only counts are kept, never the runs (a long
flow must not hold every result it ever produced).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from flowpod.states import StateType

if TYPE_CHECKING:
    from flowpod.states import State

__all__ = ["SUMMARY_MIN_TASK_RUNS", "TaskRunTally"]

# A flow with fewer task runs than this gets a summary only when one of them did not complete:
# below it the per-run lines are short enough to read.
SUMMARY_MIN_TASK_RUNS = 10


class TaskRunTally:
    """Counts of one flow run's task runs; safe to update from the task runner's threads."""

    __slots__ = ("_lock", "created", "finished", "failed", "_by_name")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.created = 0
        self.finished = 0
        # True once a run ended Failed or Crashed (not Cached, NotReady, Cancelled...).
        self.failed = False
        # state name -> [count, completed?]: Cached is a Completed type, NotReady is not.
        self._by_name: dict[str, list[Any]] = {}

    def count_created(self) -> None:
        with self._lock:
            self.created += 1

    def count_final(self, state: State[Any]) -> None:
        kind = state.type
        name = state.name
        with self._lock:
            self.finished += 1
            entry = self._by_name.get(name)
            if entry is None:
                self._by_name[name] = [1, kind is StateType.COMPLETED]
            else:
                entry[0] += 1
            if kind is StateType.FAILED or kind is StateType.CRASHED:
                self.failed = True

    def counts(self) -> dict[str, int]:
        """Final states by name (``{"Completed": 998, "Failed": 2}``)."""
        with self._lock:
            return {name: entry[0] for name, entry in self._by_name.items()}

    def summary(self) -> str | None:
        """``1,000 task runs: 998 Completed, 2 Failed (see above)``, or None when not worth a line.

        Given for SUMMARY_MIN_TASK_RUNS runs or more, or when any run did not complete. Completed
        kinds come first, then the others; within each, the larger count first. Runs that never
        reached a final state (the flow ended while they waited) are counted as "not finished".
        ``(see above)`` points at the runs' own lines when some did not complete.
        """
        with self._lock:
            total = self.created
            entries = sorted(self._by_name.items(),
                             key=lambda item: (not item[1][1], -item[1][0], item[0]))
            unfinished = total - self.finished
        incomplete = unfinished > 0 or any(not entry[1] for _, entry in entries)
        if total == 0 or (total < SUMMARY_MIN_TASK_RUNS and not incomplete):
            return None
        parts = [f"{entry[0]:,} {name}" for name, entry in entries]
        if unfinished > 0:
            parts.append(f"{unfinished:,} not finished")
        noun = "task run" if total == 1 else "task runs"
        line = f"{total:,} {noun}: {', '.join(parts)}"
        return f"{line} (see above)" if incomplete else line
