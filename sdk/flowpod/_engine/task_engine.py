"""The local task-run lifecycle: everything between calling a task and its final state.

Written once, as steps (``flowpod._engine.effects``), and driven by calling (sync tasks) or by
awaiting (async tasks). The pieces live beside it: one attempt in ``flowpod._engine.attempts``
(shared with the task pods), retries in ``flowpod._engine.retries``, the cache in
``flowpod._engine.caching``. This module owns the run around them:

- resolving upstream futures (``flowpod._engine.inputs``; NotReady when one did not complete),
- the run name (``<task>-<n>`` in a flow, or ``task_run_name`` resolved once),
- the cache lock -> lookup -> attempts -> commit,
- the final state: history, on_completion / on_failure hooks, "Finished in state ...".

Entry points: ``call_sync`` / ``call_async`` for direct calls, ``prepare_submission`` /
``execute_submission`` for task runners. Directly called generator tasks are driven by
``flowpod._engine.generators``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flowpod._engine.attempts import (
    FAILED_MESSAGE,
    flog,
    hook_steps,
    run_attempt_async,
    run_attempt_sync,
    tlog,
)
from flowpod._engine.caching import (
    AcquireLock,
    cache_plan,
    commit,
    compute_cache_key,
    lookup,
)
from flowpod._engine.effects import Blocking, Steps, run_async, run_sync
from flowpod._engine.inputs import inputs_ready, inputs_steps, needs_waiting, resolve_inputs
from flowpod._engine.retries import attempts_steps
from flowpod.context import FlowRunContext, TaskRunContext, _flow_run_var, _tags_var, _task_run_var
from flowpod.context.runs import TaskRun, render_run_name
from flowpod.exceptions import UpstreamTaskError
from flowpod.logging import FLOW_LOGGER, TASK_LOGGER, setup_logging
from flowpod.states import NotReady, Pending, State, StateType, exception_to_failed_state

if TYPE_CHECKING:
    from flowpod.context.views import TaskLike

__all__ = [
    "Submission",
    "call_async",
    "call_sync",
    "compute_cache_key",
    "execute_submission",
    "finalize_steps",
    "prepare_submission",
    "run_attempt_async",
    "run_attempt_sync",
]

_INFO = logging.INFO
_ERROR = logging.ERROR


# -- creating runs ------------------------------------------------------------------------------


def new_task_run(
    task: TaskLike,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
) -> TaskRun:
    name = flow_ctx.next_task_run_name(task.name) if flow_ctx is not None else task.name
    context_tags = _tags_var.get()
    tags = sorted(task.tags | context_tags) if context_tags else sorted(task.tags)
    task_run = TaskRun(
        name,
        task.name,
        task.task_key,
        parameters,
        tags,
        flow_ctx.flow_run.id if flow_ctx is not None else None,
        parent.task_run.id if parent is not None else None,
    )
    task_run.set_state(Pending())
    if flow_ctx is not None:
        tally = task_run.tally = flow_ctx.task_runs
        tally.count_created()
    return task_run


def apply_run_name(task: TaskLike, task_run: TaskRun, params: dict[str, Any]) -> None:
    """Resolve ``task_run_name`` once per run (retries keep the name)."""
    template = task.task_run_name
    if template is None:
        return
    if callable(template):
        # A callable may read flowpod.runtime.task_run: give it the run's context.
        token = _task_run_var.set(
            TaskRunContext(task, task_run, params, False, task.persist_result)
        )
        try:
            name = render_run_name(template, params, "task", task.name)
        finally:
            _task_run_var.reset(token)
    else:
        name = render_run_name(template, params, "task", task.name)
    if not isinstance(name, str):
        raise TypeError(
            f"task_run_name of task {task.name!r} must produce a str; got "
            f"{type(name).__name__} {name!r}."
        )
    task_run.name = name


def effective_log_prints(
    task: TaskLike, flow_ctx: FlowRunContext | None, parent: TaskRunContext | None
) -> bool:
    if task.log_prints is not None:
        return task.log_prints
    if parent is not None:
        return parent.log_prints
    return flow_ctx.log_prints if flow_ctx is not None else False


# -- finishing ----------------------------------------------------------------------------------


def record_final(task: TaskLike, task_run: TaskRun, state: State[Any]) -> list[Any] | None:
    """Record the final state (counted in the flow run's tally); the hooks it calls for, if any."""
    task_run.finish(state)
    kind = state.type
    if kind is StateType.COMPLETED:
        return task.on_completion or None
    if kind is StateType.FAILED or kind is StateType.CRASHED:
        return task.on_failure or None
    return None


def log_finished(task_run: TaskRun, state: State[Any]) -> State[Any]:
    """Log "Finished in state ..." (INFO when Completed, else ERROR); returns ``state``."""
    level = _INFO if state.type is StateType.COMPLETED else _ERROR
    if TASK_LOGGER.isEnabledFor(level):
        tlog(task_run, level, "Finished in state %s", state)
    return state


def finalize_steps(task: TaskLike, task_run: TaskRun, state: State[Any]) -> Steps[State[Any]]:
    """Record the final state, run the hooks it calls for, log "Finished in state ..."."""
    hooks = record_final(task, task_run, state)
    if hooks:
        yield from hook_steps(hooks, task, task_run, state, tlog)
    return log_finished(task_run, state)


def _outcome(state: State[Any], return_state: bool) -> Any:
    data = state.data
    if (
        state.type is StateType.CRASHED
        and isinstance(data, BaseException)
        and not isinstance(data, Exception)
    ):
        raise data  # KeyboardInterrupt, cancellation, an enclosing deadline: keep unwinding
    if return_state:
        return state
    if state.type is StateType.COMPLETED:
        return data
    return state.result()


def announce_run(flow_ctx: FlowRunContext | None, task: TaskLike, task_run: TaskRun,
              submitted: bool) -> None:
    if flow_ctx is None or not FLOW_LOGGER.isEnabledFor(_INFO):
        return
    flog(flow_ctx.flow_run, _INFO, "Created task run %r for task %r", task_run.name, task.name)
    if submitted:
        flog(flow_ctx.flow_run, _INFO, "Submitted task run %r for execution.", task_run.name)
    else:
        flog(flow_ctx.flow_run, _INFO, "Executing %r immediately...", task_run.name)


# -- the run ------------------------------------------------------------------------------------


def run_steps(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
    announce: bool,
    name_run: bool = True,
) -> Steps[State[Any]]:
    """A task run from its Pending state to its final one."""
    try:
        # The common case (nothing to wait for) without a generator of its own: this is the
        # per-call hot path.
        if inputs_ready(parameters, wait_for):
            params = resolve_inputs(parameters, None)
        else:
            params = yield from inputs_steps(parameters, wait_for)
    except UpstreamTaskError as exc:
        if announce:
            announce_run(flow_ctx, task, task_run, False)
        return (yield from finalize_steps(task, task_run, NotReady(message=str(exc), data=exc)))
    task_run.parameters = params
    log_prints = effective_log_prints(task, flow_ctx, parent)
    try:
        if task.task_run_name is not None and name_run:
            apply_run_name(task, task_run, params)
        if announce:
            announce_run(flow_ctx, task, task_run, False)
        plan = cache_plan(task, task_run, params, flow_ctx, log_prints)
    except Exception as exc:
        failed = exception_to_failed_state(exc, FAILED_MESSAGE)
        return (yield from finalize_steps(task, task_run, failed))
    if plan is None:
        state = yield from attempts_steps(task, task_run, params, log_prints)
        hooks = record_final(task, task_run, state)
        if hooks:
            yield from hook_steps(hooks, task, task_run, state, tlog)
        return log_finished(task_run, state)
    store, key = plan
    task_run.cache_key = key
    release = yield AcquireLock(store.lock(key))
    try:
        cached = None if task.refresh_cache else lookup(task_run, store, key)
        if cached is not None:
            state = cached
        else:
            state = yield from attempts_steps(task, task_run, params, log_prints)
            if state.type is StateType.COMPLETED:
                state = commit(task, store, key, state)
    finally:
        yield Blocking(release)
    return (yield from finalize_steps(task, task_run, state))


# -- entry points from Task ---------------------------------------------------------------------


def begin_call(
    task: TaskLike, parameters: dict[str, Any]
) -> tuple[TaskRun, FlowRunContext | None, TaskRunContext | None]:
    """The Pending run of a direct call, in the caller's flow run and task run (if any)."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    if flow_ctx is None and parent is None:
        setup_logging()
    return new_task_run(task, parameters, flow_ctx, parent), flow_ctx, parent


def call_sync(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> Any:
    """A direct call of a sync task: run it inline, return its result (or state)."""
    task_run, flow_ctx, parent = begin_call(task, parameters)
    steps = run_steps(task, task_run, parameters, wait_for, flow_ctx, parent, True)
    return _outcome(run_sync(steps), return_state)


async def call_async(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> Any:
    """A direct call of an async task (the coroutine the call returns)."""
    task_run, flow_ctx, parent = begin_call(task, parameters)
    steps = run_steps(task, task_run, parameters, wait_for, flow_ctx, parent, True)
    return _outcome(await run_async(steps), return_state)


class Submission:
    """A task run created by a task runner, ready to execute anywhere (a thread, a pod)."""

    __slots__ = ("task", "task_run", "parameters", "wait_for", "flow_ctx", "parent", "named")

    def __init__(self, task: TaskLike, task_run: TaskRun, parameters: dict[str, Any],
                 wait_for: Any, flow_ctx: FlowRunContext | None,
                 parent: TaskRunContext | None) -> None:
        # Any, not TaskLike: a task runner reads it back as the ``flowpod.tasks.Task`` it
        # submitted (the Kubernetes runner pickles it), a type the engine cannot name.
        self.task: Any = task
        self.task_run = task_run
        self.parameters = parameters
        self.wait_for = wait_for
        self.flow_ctx = flow_ctx
        self.parent = parent
        self.named = False  # True once task_run_name has been applied


def prepare_submission(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any
) -> Submission:
    """Create the task run of a ``.submit()`` (Pending, named, announced)."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    task_run = new_task_run(task, parameters, flow_ctx, parent)
    sub = Submission(task, task_run, parameters, wait_for, flow_ctx, parent)
    if task.task_run_name is not None and not any(needs_waiting(v) for v in parameters.values()):
        try:
            apply_run_name(task, task_run, parameters)
            sub.named = True
        except Exception:  # noqa: BLE001 - retried, and reported, when the run executes
            pass
    announce_run(flow_ctx, task, task_run, True)
    return sub


def execute_submission(sub: Submission) -> State[Any]:
    """Drive a prepared run to its final state (in the caller's thread; async on a new loop)."""
    task = sub.task
    # A name template that needed upstream results is resolved once they are in.
    name_run = task.task_run_name is not None and not sub.named
    steps = run_steps(task, sub.task_run, sub.parameters, sub.wait_for, sub.flow_ctx,
                      sub.parent, False, name_run)
    if task.isasync:
        import asyncio

        return asyncio.run(run_async(steps))
    return run_sync(steps)
