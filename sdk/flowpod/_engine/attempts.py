"""One attempt of a task run: the piece every place that runs tasks shares.

``run_attempt_sync`` / ``run_attempt_async`` append the Running (or Retrying) state, call the
on_running hooks, install the task-run context (``flowpod.runtime``, ``get_run_logger``) and
log_prints, apply the timeout, and turn the function's return value or exception into a Completed,
Failed, TimedOut or Crashed state, which they return without recording it: recording, retries and
caching belong to the caller (the local driver in ``flowpod._engine.task_engine``; in a task pod,
the
operator). Hooks and the engine's log helper live here too, since both layers use them.
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowpod._engine.runs import TaskRun
from flowpod.context import TaskRunContext, _task_run_var
from flowpod.exceptions import TaskRunTimeoutError
from flowpod.logging import TASK_LOGGER, printing_active, printing_to, task_run_logger
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
    from flowpod._engine.protocols import TaskLike

__all__ = [
    "FAILED_MESSAGE",
    "exc_info_of",
    "failure_state",
    "run_attempt_async",
    "run_attempt_sync",
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
        TASK_LOGGER.log(
            level,
            msg,
            *args,
            exc_info=exc_info,
            extra={
                "flowpod_label": f"Task run {task_run.name!r}",
                "task_run_id": str(task_run.id),
                "task_run_name": task_run.name,
                "task_name": task_run.task_name,
            },
        )


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


def run_attempt_sync(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    *,
    log_prints: bool = False,
    retry: bool = False,
) -> State[Any]:
    """Run one attempt of a sync task run and return its Completed or failed state.

    Appends the Running (``retry``: Retrying) state to the run, calls the on_running hooks, and
    runs the function with the task-run context, log_prints and the timeout applied. Never raises
    for the task's own errors; the returned final-or-failed state is not yet added to the history.
    """
    running = task_run.set_state(Retrying() if retry else Running())
    if task.on_running:
        run_hooks_sync(task.on_running, task, task_run, running)
    token = _task_run_var.set(
        TaskRunContext(task, task_run, parameters, log_prints, task.persist_result)
    )
    try:
        if log_prints or printing_active():
            # Off for this task but on in the enclosing run: print normally again.
            with printing_to(task_run_logger(task_run) if log_prints else None):
                value = _invoke_sync(task, parameters)
        else:
            value = _invoke_sync(task, parameters)
        if isinstance(value, State):
            # A task may set its own final state by returning one (e.g. Failed(message=...)).
            return value.copy()
        return Completed(data=value)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a state
        return failure_state(exc)
    finally:
        _task_run_var.reset(token)


def _invoke_sync(task: TaskLike, params: dict[str, Any]) -> Any:
    if task.timeout_seconds:
        from flowpod._common.timeouts import call_with_timeout

        return call_with_timeout(
            lambda: _call_fn(task, params), task.timeout_seconds, timeout_error(task)
        )
    return _call_fn(task, params)


async def run_attempt_async(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    *,
    log_prints: bool = False,
    retry: bool = False,
) -> State[Any]:
    """The async counterpart of ``run_attempt_sync`` (the function is awaited on this loop)."""
    running = task_run.set_state(Retrying() if retry else Running())
    if task.on_running:
        await run_hooks_async(task.on_running, task, task_run, running)
    token = _task_run_var.set(
        TaskRunContext(task, task_run, parameters, log_prints, task.persist_result)
    )
    try:
        if log_prints or printing_active():
            # Off for this task but on in the enclosing run: print normally again.
            with printing_to(task_run_logger(task_run) if log_prints else None):
                value = await _invoke_async(task, parameters)
        else:
            value = await _invoke_async(task, parameters)
        if isinstance(value, State):
            # A task may set its own final state by returning one (e.g. Failed(message=...)).
            return value.copy()
        return Completed(data=value)
    except BaseException as exc:  # noqa: BLE001
        return failure_state(exc)
    finally:
        _task_run_var.reset(token)


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


async def _invoke_async(task: TaskLike, params: dict[str, Any]) -> Any:
    if task.timeout_seconds:
        from flowpod._common.timeouts import await_with_timeout

        return await await_with_timeout(
            _call_fn_async(task, params), task.timeout_seconds, timeout_error(task)
        )
    return await _call_fn_async(task, params)


# -- hooks --------------------------------------------------------------------------------------


def _hook_name(hook: Any) -> str:
    return getattr(hook, "__name__", None) or repr(hook)


def run_hooks_sync(hooks: list[Any], task: Any, task_run: TaskRun, state: State[Any]) -> None:
    from flowpod._common.asyncutils import run_coro_sync

    for hook in hooks:
        name = _hook_name(hook)
        tlog(task_run, _INFO, "Running hook %r in response to entering state %r", name, state.name)
        try:
            outcome = hook(task, task_run, state)
            if inspect.iscoroutine(outcome):
                run_coro_sync(outcome)
        except Exception:
            tlog(task_run, _ERROR, "An error was encountered while running hook %r", name,
                  exc_info=True)
        else:
            tlog(task_run, _INFO, "Hook %r finished running successfully", name)


async def run_hooks_async(
    hooks: list[Any], task: Any, task_run: TaskRun, state: State[Any]
) -> None:
    for hook in hooks:
        name = _hook_name(hook)
        tlog(task_run, _INFO, "Running hook %r in response to entering state %r", name, state.name)
        try:
            outcome = hook(task, task_run, state)
            if inspect.isawaitable(outcome):
                await outcome
        except Exception:
            tlog(task_run, _ERROR, "An error was encountered while running hook %r", name,
                  exc_info=True)
        else:
            tlog(task_run, _INFO, "Hook %r finished running successfully", name)
