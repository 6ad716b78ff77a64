"""Generator tasks called directly: the run advances as the caller iterates.

The wrapper drives one task run around the user's generator: Running while it yields, Completed
when exhausted (Failed if it raises); the task-run context is installed only while the user's code
runs a step, never while the consumer holds a value. A timeout bounds the whole run, applied step
by step. Generator tasks that are submitted are consumed into a list by the ordinary driver.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import TYPE_CHECKING, Any

from flowpod._engine.attempts import failure_state, run_hooks_async, run_hooks_sync, timeout_error
from flowpod._engine.effects import run_async, run_sync
from flowpod._engine.inputs import needs_waiting, resolve_inputs
from flowpod._engine.runs import TaskRun
from flowpod._engine.task_engine import (
    announce_run,
    apply_run_name,
    effective_log_prints,
    finalize_steps,
    new_task_run,
)
from flowpod.context import FlowRunContext, TaskRunContext, _flow_run_var, _task_run_var
from flowpod.exceptions import UpstreamTaskError
from flowpod.logging import printing_to, setup_logging, task_run_logger
from flowpod.states import Completed, NotReady, Running, State

if TYPE_CHECKING:
    from flowpod._engine.protocols import TaskLike

__all__ = ["call_async_generator", "call_generator"]


def call_generator(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> Generator[Any, Any, Any]:
    """A direct call of a sync generator task: a generator that drives the run lazily."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    if flow_ctx is None and parent is None:
        setup_logging()
    task_run = new_task_run(task, parameters, flow_ctx, parent)
    return _generator_run(task, task_run, parameters, wait_for, flow_ctx, parent)


def _generator_run(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
) -> Generator[Any, Any, Any]:
    try:
        params = resolve_inputs(parameters, wait_for)
    except UpstreamTaskError as exc:
        announce_run(flow_ctx, task, task_run, False)
        run_sync(finalize_steps(task, task_run, NotReady(message=str(exc), data=exc)))
        raise
    task_run.parameters = params
    log_prints = effective_log_prints(task, flow_ctx, parent)
    if task.task_run_name is not None:
        apply_run_name(task, task_run, params)
    announce_run(flow_ctx, task, task_run, False)
    running = task_run.set_state(Running())
    if task.on_running:
        run_hooks_sync(task.on_running, task, task_run, running)
    ctx = TaskRunContext(task, task_run, params, log_prints, task.persist_result)
    printer = task_run_logger(task_run) if log_prints else None
    deadline = time.monotonic() + task.timeout_seconds if task.timeout_seconds else None
    final: State[Any] | None = None
    gen: Generator[Any, Any, Any] | None = None
    sent: Any = None
    try:
        while True:
            token = _task_run_var.set(ctx)
            try:
                with printing_to(printer):
                    if gen is None:
                        args, kwargs = task._spec.to_call(params)
                        gen = task.fn(*args, **kwargs)
                    step: Callable[[], Any] = (
                        gen.__next__ if sent is None else functools.partial(gen.send, sent)
                    )
                    if deadline is not None:
                        from flowpod._common.timeouts import call_with_timeout

                        value = call_with_timeout(
                            step, max(deadline - time.monotonic(), 1e-3), timeout_error(task)
                        )
                    else:
                        value = step()
            except StopIteration as stop:
                final = Completed(data=stop.value)
                return stop.value
            except BaseException as exc:
                final = failure_state(exc)
                raise
            finally:
                _task_run_var.reset(token)
            try:
                sent = yield value
            except GeneratorExit:
                gen.close()
                final = Completed()
                raise
    finally:
        if final is None:
            final = Completed()
        run_sync(finalize_steps(task, task_run, final))


def call_async_generator(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> AsyncGenerator[Any, Any]:
    """A direct call of an async generator task: an async generator that drives the run."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    if flow_ctx is None and parent is None:
        setup_logging()
    task_run = new_task_run(task, parameters, flow_ctx, parent)
    return _async_generator_run(task, task_run, parameters, wait_for, flow_ctx, parent)


async def _async_generator_run(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
) -> AsyncGenerator[Any, Any]:
    import asyncio

    try:
        if wait_for or any(needs_waiting(v) for v in parameters.values()):
            params = await asyncio.to_thread(resolve_inputs, parameters, wait_for)
        else:
            params = parameters
    except UpstreamTaskError as exc:
        announce_run(flow_ctx, task, task_run, False)
        await run_async(finalize_steps(task, task_run, NotReady(message=str(exc), data=exc)))
        raise
    task_run.parameters = params
    log_prints = effective_log_prints(task, flow_ctx, parent)
    if task.task_run_name is not None:
        apply_run_name(task, task_run, params)
    announce_run(flow_ctx, task, task_run, False)
    running = task_run.set_state(Running())
    if task.on_running:
        await run_hooks_async(task.on_running, task, task_run, running)
    ctx = TaskRunContext(task, task_run, params, log_prints, task.persist_result)
    printer = task_run_logger(task_run) if log_prints else None
    deadline = time.monotonic() + task.timeout_seconds if task.timeout_seconds else None
    final: State[Any] | None = None
    agen: AsyncGenerator[Any, Any] | None = None
    try:
        while True:
            token = _task_run_var.set(ctx)
            try:
                with printing_to(printer):
                    if agen is None:
                        args, kwargs = task._spec.to_call(params)
                        agen = task.fn(*args, **kwargs)
                    if deadline is not None:
                        from flowpod._common.timeouts import await_with_timeout

                        value = await await_with_timeout(
                            agen.__anext__(), max(deadline - time.monotonic(), 1e-3),
                            timeout_error(task),
                        )
                    else:
                        value = await agen.__anext__()
            except StopAsyncIteration:
                final = Completed()
                return
            except BaseException as exc:
                final = failure_state(exc)
                raise
            finally:
                _task_run_var.reset(token)
            try:
                yield value
            except GeneratorExit:
                await agen.aclose()
                final = Completed()
                raise
    finally:
        if final is None:
            final = Completed()
        await run_async(finalize_steps(task, task_run, final))
