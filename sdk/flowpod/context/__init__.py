"""The run contexts: which flow run and task run the current code belongs to, and the active tags.

Each lives in a ``ContextVar``, so threads of the task runner (which copy the submitting context)
and asyncio tasks see the run that started them. ``FlowRunContext.get()`` / ``TaskRunContext.get()``
return the innermost one or None; ``get_run_context()`` raises MissingContextError outside any run.

What a context holds is defined beside it, below the engine that fills it: the run records in
``flowpod.context.runs``, the count of a flow run's task runs in ``flowpod.context.tally``, the
typed views of a task, a flow and a task runner in
``flowpod.context.views``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from flowpod.context.tally import TaskRunTally
from flowpod.exceptions import MissingContextError

if TYPE_CHECKING:
    from flowpod.context.runs import FlowRun, TaskRun
    from flowpod.context.views import FlowLike, RunnerLike, TaskLike

__all__ = [
    "FlowRunContext",
    "TagsContext",
    "TaskRunContext",
    "get_run_context",
    "tags",
]

_flow_run_var: ContextVar[FlowRunContext | None] = ContextVar("flowpod_flow_run", default=None)
_task_run_var: ContextVar[TaskRunContext | None] = ContextVar("flowpod_task_run", default=None)
_tags_var: ContextVar[frozenset[str]] = ContextVar("flowpod_tags", default=frozenset())


class FlowRunContext:
    """What code running inside a flow run can reach: the flow, its run, its task runner."""

    __slots__ = (
        "flow",
        "flow_run",
        "parameters",
        "task_runner",
        "log_prints",
        "persist_result",
        "_counters",
        "task_runs",
        "__weakref__",
    )

    def __init__(
        self,
        flow: FlowLike,
        flow_run: FlowRun,
        task_runner: RunnerLike,
        log_prints: bool,
        persist_result: bool | None,
    ) -> None:
        self.flow = flow
        self.flow_run = flow_run
        self.parameters = flow_run.parameters
        self.task_runner = task_runner
        self.log_prints = log_prints
        self.persist_result = persist_result
        self._counters: dict[str, itertools.count[int]] = {}
        # Every task run created in this flow run, counted by final state whichever runner ran
        # it: the summary line at the end of a big flow, and task_run_failed below.
        self.task_runs = TaskRunTally()

    @property
    def task_run_failed(self) -> bool:
        """True once a task run of this flow run ended Failed or Crashed: a flow that returns
        nothing then finishes Completed() rather than "All states completed."."""
        return self.task_runs.failed

    def next_task_run_name(self, task_name: str) -> str:
        """``<task>-<n>``: n counts the runs of this task within this flow run, from 0."""
        counter = self._counters.get(task_name)
        if counter is None:
            counter = self._counters.setdefault(task_name, itertools.count())
        # next() on itertools.count is atomic under the GIL, so threads never share a name.
        return f"{task_name}-{next(counter)}"

    @staticmethod
    def get() -> FlowRunContext | None:
        return _flow_run_var.get()


class TaskRunContext:
    """What code running inside a task run can reach: the task, its run, the resolved parameters."""

    __slots__ = ("task", "task_run", "parameters", "log_prints", "persist_result")

    def __init__(
        self,
        task: TaskLike,
        task_run: TaskRun,
        parameters: dict[str, Any],
        log_prints: bool,
        persist_result: bool | None = None,
    ) -> None:
        self.task = task
        self.task_run = task_run
        self.parameters = parameters
        self.log_prints = log_prints
        self.persist_result = persist_result

    @staticmethod
    def get() -> TaskRunContext | None:
        return _task_run_var.get()


class TagsContext:
    """The tags added by enclosing ``tags(...)`` blocks."""

    @staticmethod
    def get() -> frozenset[str]:
        return _tags_var.get()


def get_run_context() -> TaskRunContext | FlowRunContext:
    """The innermost task run context, else the flow run context; raise outside any run."""
    task_ctx = _task_run_var.get()
    if task_ctx is not None:
        return task_ctx
    flow_ctx = _flow_run_var.get()
    if flow_ctx is not None:
        return flow_ctx
    raise MissingContextError(
        "No flow or task run is active: this call only works inside a function decorated with "
        "@flow or @task while it runs."
    )


@contextmanager
def tags(*new_tags: str) -> Iterator[set[str]]:
    """Add ``new_tags`` to every task and flow run started inside the block.

    Yields the full set of active tags. Blocks nest; leaving a block restores the previous tags.
    """
    for tag in new_tags:
        if not isinstance(tag, str):
            raise TypeError(f"tags(...) takes strings; got {type(tag).__name__} {tag!r}.")
    current = _tags_var.get() | frozenset(new_tags)
    token = _tags_var.set(current)
    try:
        yield set(current)
    finally:
        _tags_var.reset(token)
