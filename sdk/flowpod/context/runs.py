"""The records of task runs and flow runs: identity, parameters, tags, current state and history.

One record lives for the whole run, across all its attempts: ``set_state`` appends every state to
the history, and ``run_count`` counts the RUNNING-type entries (Running, Retrying); a task run's
``finish`` records its final state and counts it in its flow run's tally. These are what hooks,
``retry_condition_fn`` and ``flowpod.runtime`` see.
"""

from __future__ import annotations

import inspect
import random
import uuid
from typing import TYPE_CHECKING, Any

from flowpod.states import State, StateType

if TYPE_CHECKING:
    from flowpod.context.tally import TaskRunTally

__all__ = ["FlowRun", "TaskRun", "render_run_name"]


def new_run_id() -> uuid.UUID:
    """A random version-4 UUID.

    Drawn from ``random`` rather than ``os.urandom``: run ids need uniqueness, not secrecy, and the
    urandom system call releases the GIL, which costs tens of microseconds per submitted task while
    worker threads are busy. (``random`` reseeds itself in forked children.)
    """
    return uuid.UUID(int=random.getrandbits(128), version=4)


class _Run:
    __slots__ = ("id", "name", "parameters", "tags", "history", "run_count", "_state")

    def __init__(self, name: str, parameters: dict[str, Any], tags: list[str]) -> None:
        self.id = new_run_id()
        self.name = name
        self.parameters = parameters
        self.tags = tags
        self.history: list[State[Any]] = []
        self.run_count = 0
        self._state: State[Any] | None = None

    @property
    def state(self) -> State[Any] | None:
        return self._state

    @property
    def state_type(self) -> StateType | None:
        return None if self._state is None else self._state.type

    @property
    def state_name(self) -> str | None:
        return None if self._state is None else self._state.name

    def set_state(self, state: State[Any]) -> State[Any]:
        """Record ``state`` as current and append it to the history."""
        if state.type is StateType.RUNNING:
            self.run_count += 1
        self._state = state
        self.history.append(state)
        return state


class TaskRun(_Run):
    """One run of a task (all of its attempts)."""

    __slots__ = ("task_name", "task_key", "flow_run_id", "parent_task_run_id", "cache_key",
                 "tally")

    def __init__(
        self,
        name: str,
        task_name: str,
        task_key: str,
        parameters: dict[str, Any],
        tags: list[str],
        flow_run_id: uuid.UUID | None = None,
        parent_task_run_id: uuid.UUID | None = None,
    ) -> None:
        super().__init__(name, parameters, tags)
        self.task_name = task_name
        self.task_key = task_key
        self.flow_run_id = flow_run_id
        self.parent_task_run_id = parent_task_run_id
        self.cache_key: str | None = None
        # The flow run's tally this run is counted in (set by the engine that created it).
        self.tally: TaskRunTally | None = None

    def finish(self, state: State[Any]) -> State[Any]:
        """Record ``state`` as this run's final state (once per run) and count it in the flow
        run's tally."""
        self.set_state(state)
        if self.tally is not None:
            self.tally.count_final(state)
        return state

    def __repr__(self) -> str:
        return f"TaskRun(name={self.name!r}, id={self.id}, state={self.state_name})"


class FlowRun(_Run):
    """One run of a flow (all of its attempts)."""

    __slots__ = ("flow_name", "parent_flow_run_id", "parent_task_run_id")

    def __init__(
        self,
        name: str,
        flow_name: str,
        parameters: dict[str, Any],
        tags: list[str],
        parent_flow_run_id: uuid.UUID | None = None,
        parent_task_run_id: uuid.UUID | None = None,
    ) -> None:
        super().__init__(name, parameters, tags)
        self.flow_name = flow_name
        self.parent_flow_run_id = parent_flow_run_id
        self.parent_task_run_id = parent_task_run_id

    def __repr__(self) -> str:
        return f"FlowRun(name={self.name!r}, id={self.id}, state={self.state_name})"


def render_run_name(template: Any, params: dict[str, Any], kind: str, owner: str) -> Any:
    """What a ``task_run_name`` / ``flow_run_name`` (``kind``: "task" or "flow") of the task or
    flow named ``owner`` makes of ``params``: a str template is formatted with them; a callable is
    called (given ``parameters=`` if it takes them). The caller checks that a str came out."""
    if callable(template):
        if "parameters" in inspect.signature(template).parameters:
            return template(parameters=params)
        return template()
    try:
        return template.format(**params)
    except (KeyError, IndexError) as exc:
        raise ValueError(
            f"{kind}_run_name {template!r} of {kind} {owner!r} refers to {exc}, which is not "
            f"a parameter of the {kind} (parameters: {', '.join(params) or 'none'})."
        ) from None
