"""The flow-run engine: from calling a flow to its final state.

Written once, as steps (``flowpod._engine.effects``) that a sync flow's call drives by calling and
an async flow's by awaiting. It separates one attempt (``flow_attempt_steps``: Running or Retrying,
on_running hooks, the flow-run context with a fresh task runner, log_prints, the timeout, the return
value turned into a state by ``flowpod.states.return_value_to_state``, and a line counting its task
runs by final state when there were many or some did not complete) from the lifecycle (parameter
validation, the run name, retries, final hooks, log lines). The flow-runner pod on Kubernetes
reuses the attempt with another task runner.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flowpod._engine.attempts import flog, hook_steps
from flowpod._engine.effects import Blocking, Effect, Sleep, Steps, run_async, run_sync
from flowpod.context import FlowRunContext, _flow_run_var, _tags_var, _task_run_var
from flowpod.context.runs import FlowRun, render_run_name
from flowpod.exceptions import FlowRunTimeoutError
from flowpod.futures import FlowpodFuture, resolve_futures_to_states
from flowpod.logging import ENGINE_LOGGER, FLOW_LOGGER, flow_run_logger, printing_to, setup_logging
from flowpod.states import (
    Completed,
    Crashed,
    Failed,
    Pending,
    Retrying,
    Running,
    State,
    StateType,
    TimedOut,
    exception_to_failed_state,
    format_exception,
    return_value_to_state,
)

if TYPE_CHECKING:
    from flowpod.context.views import FlowLike

__all__ = ["run_flow_async", "run_flow_attempt_async", "run_flow_attempt_sync", "run_flow_sync"]

_INFO = logging.INFO
_ERROR = logging.ERROR
_FAILED_MESSAGE = "Flow run encountered an exception:"


# -- the run record -----------------------------------------------------------------------------


def _new_flow_run(flow: FlowLike, parameters: dict[str, Any]) -> FlowRun:
    from flowpod._common.names import generate_slug

    parent_flow = _flow_run_var.get()
    parent_task = _task_run_var.get()
    flow_run = FlowRun(
        generate_slug(),
        flow.name,
        parameters,
        sorted(_tags_var.get()),
        parent_flow.flow_run.id if parent_flow is not None else None,
        parent_task.task_run.id if parent_task is not None else None,
    )
    flow_run.set_state(Pending())
    return flow_run


def _apply_run_name(flow: FlowLike, flow_run: FlowRun, params: dict[str, Any]) -> None:
    template = flow.flow_run_name
    if template is None:
        return
    name = render_run_name(template, params, "flow", flow.name)
    if not isinstance(name, str):
        raise TypeError(
            f"flow_run_name of flow {flow.name!r} must produce a str; got {type(name).__name__}."
        )
    flow_run.name = name


def _prepare(flow: FlowLike, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> tuple[FlowRun, State[Any] | None]:
    """Create the run, validate parameters, name it; a Failed state if either step failed."""
    setup_logging()
    parameters = flow._spec.bind(args, kwargs)
    flow_run = _new_flow_run(flow, parameters)
    failure: State[Any] | None = None
    if flow.should_validate_parameters:
        try:
            flow_run.parameters = flow.validate_parameters(parameters)
        except Exception as exc:
            failure = Failed(
                message=f"Validation of flow parameters failed with error: {format_exception(exc)}",
                data=exc,
            )
    if failure is None:
        try:
            _apply_run_name(flow, flow_run, flow_run.parameters)
        except Exception as exc:
            failure = exception_to_failed_state(exc, _FAILED_MESSAGE)
    if ENGINE_LOGGER.isEnabledFor(_INFO):
        ENGINE_LOGGER.info("Created flow run %r for flow %r", flow_run.name, flow.name)
    return flow_run, failure


# -- one attempt ----------------------------------------------------------------------------------


def _timeout_error(flow: FlowLike) -> Any:
    seconds = flow.timeout_seconds

    def make() -> BaseException:
        return FlowRunTimeoutError(f"Flow run exceeded timeout of {seconds} second(s)")

    return make


def _state_from_exception(flow_run: FlowRun, exc: BaseException) -> State[Any]:
    if isinstance(exc, FlowRunTimeoutError):
        return TimedOut(message=str(exc), data=exc)
    if isinstance(exc, Exception):
        flog(flow_run, _ERROR, "Encountered exception during execution: %r", exc,
              exc_info=(type(exc), exc, exc.__traceback__))
        return exception_to_failed_state(exc, _FAILED_MESSAGE)
    return Crashed(
        message=f"Execution was interrupted by an unexpected exception: {format_exception(exc)}",
        data=exc,
    )


def _contains_future(value: Any) -> bool:
    if isinstance(value, FlowpodFuture):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return any(_contains_future(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_future(v) for v in value.values())
    return False


class InvokeFlow(Effect):
    """Call the flow's function with its timeout: called in a sync run, awaited in an async one."""

    __slots__ = ("flow", "args", "kwargs")

    def __init__(self, flow: FlowLike, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.flow = flow
        self.args = args
        self.kwargs = kwargs

    def run_sync(self) -> Any:
        flow, args, kwargs = self.flow, self.args, self.kwargs
        if flow.timeout_seconds:
            from flowpod._common.timeouts import call_with_timeout

            return call_with_timeout(
                lambda: flow.fn(*args, **kwargs), flow.timeout_seconds, _timeout_error(flow)
            )
        return flow.fn(*args, **kwargs)

    async def run_async(self) -> Any:
        flow, args, kwargs = self.flow, self.args, self.kwargs
        if flow.timeout_seconds:
            from flowpod._common.timeouts import await_with_timeout

            return await await_with_timeout(
                flow.fn(*args, **kwargs), flow.timeout_seconds, _timeout_error(flow)
            )
        return await flow.fn(*args, **kwargs)


def flow_attempt_steps(flow: FlowLike, flow_run: FlowRun, retry: bool = False
                       ) -> Steps[State[Any]]:
    """One attempt of a flow run; its final-or-failed state (not yet recorded)."""
    running = flow_run.set_state(Retrying() if retry else Running())
    if flow.on_running:
        yield from hook_steps(flow.on_running, flow, flow_run, running, flog)
    runner = flow.task_runner.duplicate()
    log_prints = bool(flow.log_prints)
    ctx = FlowRunContext(flow, flow_run, runner, log_prints, flow.persist_result)
    flow_token = _flow_run_var.set(ctx)
    task_token = _task_run_var.set(None)
    args, kwargs = flow._spec.to_call(flow_run.parameters)
    try:
        with printing_to(flow_run_logger(flow_run) if log_prints else None):
            runner.__enter__()
            try:
                value = yield InvokeFlow(flow, args, kwargs)
                if _contains_future(value):
                    value = yield Blocking(resolve_futures_to_states, value)
            except BaseException as exc:
                runner.__exit__(type(exc), exc, exc.__traceback__)
                raise
            # Waiting for the runner's task runs blocks: an async flow does it off the loop.
            yield Blocking(runner.__exit__, None, None, None)
        state = _final_state(ctx, value)
    except BaseException as exc:  # noqa: BLE001 - every outcome becomes a state
        state = _state_from_exception(flow_run, exc)
    finally:
        _task_run_var.reset(task_token)
        _flow_run_var.reset(flow_token)
    _log_task_run_summary(ctx)
    return state


def _log_task_run_summary(ctx: FlowRunContext) -> None:
    """One line counting the attempt's task runs by final state, after all of them ended
    (``flowpod.context.tally`` decides when it is worth a line)."""
    if ctx.task_runs.created and FLOW_LOGGER.isEnabledFor(_INFO):
        line = ctx.task_runs.summary()
        if line is not None:
            flog(ctx.flow_run, _INFO, "%s", line)


def run_flow_attempt_sync(flow: FlowLike, flow_run: FlowRun, *, retry: bool = False
                          ) -> State[Any]:
    """One attempt of a sync flow (``flow_attempt_steps``, called)."""
    return run_sync(flow_attempt_steps(flow, flow_run, retry))


async def run_flow_attempt_async(flow: FlowLike, flow_run: FlowRun, *, retry: bool = False
                                 ) -> State[Any]:
    """One attempt of an async flow (``flow_attempt_steps``, awaited)."""
    return await run_async(flow_attempt_steps(flow, flow_run, retry))


def _final_state(ctx: FlowRunContext, value: Any) -> State[Any]:
    # A flow that returns nothing ends as the seed shows it, "Completed('All states completed.')",
    # when every task run it made completed; a failed task whose result was never used still does
    # not fail the flow (Prefect 3), it only drops that message.
    if value is None and not ctx.task_run_failed:
        return Completed(message="All states completed.")
    return return_value_to_state(value)


# -- hooks and the lifecycle ---------------------------------------------------------------------


def _final_hooks(flow: FlowLike, state: State[Any]) -> list[Any]:
    kind = state.type
    if kind is StateType.COMPLETED:
        return flow.on_completion
    if kind is StateType.FAILED:
        return flow.on_failure
    if kind is StateType.CRASHED:
        return flow.on_crashed
    if kind is StateType.CANCELLED:
        return flow.on_cancellation
    return []


def _retry_delay(flow: FlowLike, flow_run: FlowRun, failed: State[Any]) -> float | None:
    """The delay before the next attempt, or None when the failed run is final."""
    from flowpod._contract.retrying import decide_retry, resolve_delays

    retries = flow.retries or 0
    if not retries:
        return None
    decision = decide_retry(
        flow_run.run_count, retries, resolve_delays(flow.retry_delay_seconds, retries), None
    )
    if not decision.retry:
        return None
    flog(
        flow_run, _INFO,
        "Received non-final state 'AwaitingRetry' when proposing final state %r and will attempt "
        "to run again...", "Failed",
    )
    from flowpod._engine.transitions import state_after_failure

    flow_run.set_state(state_after_failure(failed, decision, time.time()))
    return decision.delay_seconds


def _log_finished(flow_run: FlowRun, state: State[Any]) -> None:
    level = _INFO if state.type is StateType.COMPLETED else _ERROR
    if FLOW_LOGGER.isEnabledFor(level):
        flog(flow_run, level, "Finished in state %s", state)


def _outcome(state: State[Any], return_state: bool) -> Any:
    data = state.data
    if state.type is StateType.CRASHED and isinstance(data, BaseException) and not isinstance(
        data, Exception
    ):
        raise data
    if return_state:
        return state
    return state.result()


def flow_run_steps(flow: FlowLike, flow_run: FlowRun, failure: State[Any] | None
                   ) -> Steps[State[Any]]:
    """Attempts (with retries) unless preparing the run already failed; then the final state,
    its hooks and "Finished in state ..."."""
    state = failure
    if state is None:
        retry = False
        while True:
            state = yield from flow_attempt_steps(flow, flow_run, retry)
            if state.type is not StateType.FAILED:
                break
            delay = _retry_delay(flow, flow_run, state)
            if delay is None:
                break
            yield Sleep(delay)
            retry = True
    flow_run.set_state(state)
    hooks = _final_hooks(flow, state)
    if hooks:
        yield from hook_steps(hooks, flow, flow_run, state, flog)
    _log_finished(flow_run, state)
    return state


def run_flow_sync(flow: FlowLike, args: tuple[Any, ...], kwargs: dict[str, Any],
                  return_state: bool = False) -> Any:
    """Call a sync flow: run it to its final state; return its result (or state)."""
    flow_run, failure = _prepare(flow, args, kwargs)
    return _outcome(run_sync(flow_run_steps(flow, flow_run, failure)), return_state)


async def run_flow_async(flow: FlowLike, args: tuple[Any, ...], kwargs: dict[str, Any],
                         return_state: bool = False) -> Any:
    """Call an async flow (the coroutine the call returns)."""
    flow_run, failure = _prepare(flow, args, kwargs)
    return _outcome(await run_async(flow_run_steps(flow, flow_run, failure)), return_state)
