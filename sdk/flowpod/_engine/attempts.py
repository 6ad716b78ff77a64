"""One attempt of a task run, and hooks: the pieces every place that runs tasks shares.

``attempt_steps`` (driven by ``run_attempt_sync`` / ``run_attempt_async``) appends the Running (or
Retrying) state, calls the on_running hooks, installs the task-run context (``flowpod.runtime``,
``get_run_logger``) and log_prints, applies the timeout, and turns the function's return value or
exception into a Completed, Failed, TimedOut or Crashed state, which it returns without recording
it: recording, retries and caching belong to the caller (``flowpod._engine.task_engine`` here; in a
task pod, the operator). Only ``Invoke``, the call of the function itself, differs between a sync
and an async run. Hooks and the engine's log helper live here too, since both layers use them.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowpod._engine.effects import Effect, Steps, Wait, run_async, run_sync
from flowpod.context import TaskRunContext, _task_run_var
from flowpod.context.runs import TaskRun
from flowpod.exceptions import TaskRunTimeoutError
from flowpod.logging import FLOW_LOGGER, TASK_LOGGER, printing_active, printing_to, task_run_logger
from flowpod.states import (
    Completed,
    Crashed,
    Retrying,
    Running,
    State,
    TimedOut,
    exception_to_failed_state,
    format_exception,
)

if TYPE_CHECKING:
    from flowpod.context.views import TaskLike

__all__ = [
    "FAILED_MESSAGE",
    "Invoke",
    "attempt_steps",
    "exc_info_of",
    "failure_state",
    "flog",
    "run_attempt_async",
    "run_attempt_sync",
    "hook_steps",
    "run_hooks_async",
    "run_hooks_sync",
    "timeout_error",
    "tlog",
]

_INFO = logging.INFO
_ERROR = logging.ERROR
FAILED_MESSAGE = "Task run encountered an exception"


# -- logging helpers ----------------------------------------------------------------------------


def tlog(task_run: TaskRun, level: int, msg: str, *args: Any, exc_info: Any = None) -> None:
    """Log ``msg`` for ``task_run`` (labelled ``Task run '<name>'``); free when the level is off."""
    if TASK_LOGGER.isEnabledFor(level):
        extra = {"flowpod_label": f"Task run {task_run.name!r}", "task_run_id": str(task_run.id),
                 "task_run_name": task_run.name, "task_name": task_run.task_name}
        TASK_LOGGER.log(level, msg, *args, exc_info=exc_info, extra=extra)


def flog(flow_run: Any, level: int, msg: str, *args: Any, exc_info: Any = None) -> None:
    """Log ``msg`` for ``flow_run`` (labelled ``Flow run '<name>'``); free when the level is off."""
    if FLOW_LOGGER.isEnabledFor(level):
        extra = {"flowpod_label": f"Flow run {flow_run.name!r}", "flow_run_id": str(flow_run.id),
                 "flow_run_name": flow_run.name}
        FLOW_LOGGER.log(level, msg, *args, exc_info=exc_info, extra=extra)


def exc_info_of(exc: Any) -> Any:
    # A timeout's traceback shows only the engine's own frames: leave it out.
    if isinstance(exc, BaseException) and not isinstance(exc, TaskRunTimeoutError):
        return (type(exc), exc, exc.__traceback__)
    return None


# -- calling the function -----------------------------------------------------------------------


def timeout_error(task: TaskLike) -> Callable[[], BaseException]:
    """A factory of the TaskRunTimeoutError raised when ``task`` overruns its timeout."""
    seconds = task.timeout_seconds

    def make() -> BaseException:
        return TaskRunTimeoutError(f"Task run exceeded timeout of {seconds} second(s)")

    return make


def _call_fn(task: TaskLike, params: dict[str, Any]) -> Any:
    args, kwargs = task._spec.to_call(params)
    value = task.fn(*args, **kwargs)
    if type(value) is types.GeneratorType:
        # A generator returned (not yielded) by the task is consumed into a list.
        value = list(value)
    return value


def failure_state(exc: BaseException) -> State[Any]:
    """TimedOut for a timeout, Failed for other exceptions, Crashed for BaseExceptions
    (KeyboardInterrupt, cancellation, an enclosing run's deadline)."""
    if isinstance(exc, TaskRunTimeoutError):
        return TimedOut(message=str(exc), data=exc)
    if isinstance(exc, Exception):
        return exception_to_failed_state(exc, FAILED_MESSAGE)
    return Crashed(
        message=f"Execution was interrupted by an unexpected exception: {format_exception(exc)}",
        data=exc,
    )


class Invoke(Effect):
    """Call the task's function with the timeout applied: called in a sync run, awaited (on this
    loop) in an async one."""

    __slots__ = ("task", "params")

    def __init__(self, task: TaskLike, params: dict[str, Any]) -> None:
        self.task = task
        self.params = params

    def run_sync(self) -> Any:
        task, params = self.task, self.params
        if task.timeout_seconds:
            from flowpod._common.timeouts import call_with_timeout

            return call_with_timeout(
                lambda: _call_fn(task, params), task.timeout_seconds, timeout_error(task)
            )
        return _call_fn(task, params)

    async def run_async(self) -> Any:
        task, params = self.task, self.params
        if task.timeout_seconds:
            from flowpod._common.timeouts import await_with_timeout

            return await await_with_timeout(
                _call_fn_async(task, params), task.timeout_seconds, timeout_error(task)
            )
        return await _call_fn_async(task, params)


def attempt_steps(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    log_prints: bool = False,
    retry: bool = False,
) -> Steps[State[Any]]:
    """One attempt of a task run, returning its Completed or failed state.

    Appends the Running (``retry``: Retrying) state to the run, calls the on_running hooks, and
    runs the function with the task-run context, log_prints and the timeout applied. Never raises
    for the task's own errors; the returned final-or-failed state is not yet added to the history.
    """
    running = task_run.set_state(Retrying() if retry else Running())
    if task.on_running:
        yield from hook_steps(task.on_running, task, task_run, running, tlog)
    token = _task_run_var.set(
        TaskRunContext(task, task_run, parameters, log_prints, task.persist_result)
    )
    try:
        if log_prints or printing_active():
            # Off for this task but on in the enclosing run: print normally again.
            with printing_to(task_run_logger(task_run) if log_prints else None):
                value = yield Invoke(task, parameters)
        else:
            value = yield Invoke(task, parameters)
        if isinstance(value, State):
            # A task may set its own final state by returning one (e.g. Failed(message=...)).
            return value.copy()
        return Completed(data=value)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a state
        return failure_state(exc)
    finally:
        _task_run_var.reset(token)


def run_attempt_sync(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    *,
    log_prints: bool = False,
    retry: bool = False,
) -> State[Any]:
    """One attempt of a sync task run (``attempt_steps``, called)."""
    return run_sync(attempt_steps(task, task_run, parameters, log_prints, retry))


async def run_attempt_async(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    *,
    log_prints: bool = False,
    retry: bool = False,
) -> State[Any]:
    """One attempt of an async task run (``attempt_steps``, awaited on this loop)."""
    return await run_async(attempt_steps(task, task_run, parameters, log_prints, retry))


async def _call_fn_async(task: TaskLike, params: dict[str, Any]) -> Any:
    args, kwargs = task._spec.to_call(params)
    value = task.fn(*args, **kwargs)
    if inspect.isawaitable(value):
        value = await value
    if inspect.isasyncgen(value):
        value = [item async for item in value]
    elif type(value) is types.GeneratorType:
        value = list(value)
    return value


# -- hooks --------------------------------------------------------------------------------------


def _hook_name(hook: Any) -> str:
    return getattr(hook, "__name__", None) or repr(hook)


def hook_steps(
    hooks: list[Any], owner: Any, run: Any, state: State[Any], log: Callable[..., None]
) -> Steps[None]:
    """Call each hook with (task or flow, run, state); an async hook is awaited. A hook that
    raises is logged (through ``log``, the run's labelled logger) and the next one still runs."""
    for hook in hooks:
        name = _hook_name(hook)
        log(run, _INFO, "Running hook %r in response to entering state %r", name, state.name)
        try:
            yield Wait(hook(owner, run, state))
        except Exception:
            log(run, _ERROR, "An error was encountered while running hook %r", name, exc_info=True)
        else:
            log(run, _INFO, "Hook %r finished running successfully", name)


def run_hooks_sync(hooks: list[Any], task: Any, task_run: TaskRun, state: State[Any]) -> None:
    """A task's hooks, called (the task pods use this)."""
    run_sync(hook_steps(hooks, task, task_run, state, tlog))


async def run_hooks_async(
    hooks: list[Any], task: Any, task_run: TaskRun, state: State[Any]
) -> None:
    """A task's hooks, awaited."""
    await run_async(hook_steps(hooks, task, task_run, state, tlog))
