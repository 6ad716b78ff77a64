"""Generator tasks called directly: the run advances as the caller iterates.

The wrapper drives one task run around the user's generator: Running while it yields, Completed
when exhausted (Failed if it raises); the task-run context is installed only while the user's code
runs a step, never while the consumer holds a value. A timeout bounds the whole run, applied step
by step. Generator tasks that are submitted are consumed into a list by the ordinary driver.

As everywhere in the engine, the run is written once (``generator_steps``); one more effect,
``Emit``, hands a value to the consumer, which is why the two drivers here are themselves a
generator and an async generator.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

from flowpod._engine.attempts import failure_state, hook_steps, timeout_error, tlog
from flowpod._engine.effects import Effect, Steps
from flowpod._engine.inputs import inputs_steps
from flowpod._engine.task_engine import (
    announce_run,
    apply_run_name,
    begin_call,
    effective_log_prints,
    finalize_steps,
)
from flowpod.context import TaskRunContext, _task_run_var
from flowpod.exceptions import UpstreamTaskError
from flowpod.logging import printing_to, task_run_logger
from flowpod.states import Completed, NotReady, Running, State

if TYPE_CHECKING:
    from flowpod.context import FlowRunContext
    from flowpod.context.runs import TaskRun
    from flowpod.context.views import TaskLike

__all__ = ["call_async_generator", "call_generator"]


class Emit(Effect):
    """Hand ``value`` to the consumer; the result is what the consumer sends back."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Advance(Effect):
    """One step of the user's generator (``next``/``send``; ``__anext__`` awaited), bounded by
    what is left of the run's deadline."""

    __slots__ = ("task", "gen", "sent", "deadline")

    def __init__(self, task: TaskLike, gen: Any, sent: Any, deadline: float | None) -> None:
        self.task = task
        self.gen = gen
        self.sent = sent
        self.deadline = deadline

    def run_sync(self) -> Any:
        gen = self.gen
        step = gen.__next__ if self.sent is None else functools.partial(gen.send, self.sent)
        if self.deadline is None:
            return step()
        from flowpod._common.timeouts import call_with_timeout

        remaining = max(self.deadline - time.monotonic(), 1e-3)
        return call_with_timeout(step, remaining, timeout_error(self.task))

    async def run_async(self) -> Any:
        if self.deadline is None:
            return await self.gen.__anext__()
        from flowpod._common.timeouts import await_with_timeout

        remaining = max(self.deadline - time.monotonic(), 1e-3)
        return await await_with_timeout(
            self.gen.__anext__(), remaining, timeout_error(self.task)
        )


class Close(Effect):
    """Close the user's generator (the consumer stopped early)."""

    __slots__ = ("gen",)

    def __init__(self, gen: Any) -> None:
        self.gen = gen

    def run_sync(self) -> None:
        self.gen.close()

    async def run_async(self) -> None:
        await self.gen.aclose()


def generator_steps(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
) -> Steps[Any]:
    """The run of a generator task, yielding ``Emit`` for each value; returns the generator's
    return value. Errors reach the consumer (after the run is finalized)."""
    try:
        params = yield from inputs_steps(parameters, wait_for)
    except UpstreamTaskError as exc:
        announce_run(flow_ctx, task, task_run, False)
        yield from finalize_steps(task, task_run, NotReady(message=str(exc), data=exc))
        raise
    task_run.parameters = params
    log_prints = effective_log_prints(task, flow_ctx, parent)
    if task.task_run_name is not None:
        apply_run_name(task, task_run, params)
    announce_run(flow_ctx, task, task_run, False)
    running = task_run.set_state(Running())
    if task.on_running:
        yield from hook_steps(task.on_running, task, task_run, running, tlog)
    ctx = TaskRunContext(task, task_run, params, log_prints, task.persist_result)
    printer = task_run_logger(task_run) if log_prints else None
    deadline = time.monotonic() + task.timeout_seconds if task.timeout_seconds else None
    final: State[Any] | None = None
    gen: Any = None
    sent: Any = None
    try:
        while True:
            token = _task_run_var.set(ctx)
            try:
                with printing_to(printer):
                    if gen is None:
                        args, kwargs = task._spec.to_call(params)
                        gen = task.fn(*args, **kwargs)
                    value = yield Advance(task, gen, sent, deadline)
            except StopIteration as stop:
                final = Completed(data=stop.value)
                return stop.value
            except StopAsyncIteration:
                final = Completed()
                return None
            except BaseException as exc:
                final = failure_state(exc)
                raise
            finally:
                _task_run_var.reset(token)
            try:
                sent = yield Emit(value)
            except GeneratorExit:
                yield Close(gen)
                final = Completed()
                raise
    finally:
        if final is None:
            final = Completed()
        yield from finalize_steps(task, task_run, final)


def _drive_sync(steps: Steps[Any]) -> Generator[Any, Any, Any]:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            send = (yield effect.value) if type(effect) is Emit else effect.run_sync()
        except BaseException as exc:  # noqa: BLE001 - thrown back into the steps
            send, error = None, exc


async def _drive_async(steps: Steps[Any]) -> AsyncGenerator[Any, Any]:
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(send) if error is None else steps.throw(error)
        except StopIteration:
            return
        error = None
        try:
            send = (yield effect.value) if type(effect) is Emit else await effect.run_async()
        except BaseException as exc:  # noqa: BLE001 - thrown back into the steps
            send, error = None, exc


def call_generator(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> Generator[Any, Any, Any]:
    """A direct call of a sync generator task: a generator that drives the run lazily."""
    task_run, flow_ctx, parent = begin_call(task, parameters)
    return _drive_sync(generator_steps(task, task_run, parameters, wait_for, flow_ctx, parent))


def call_async_generator(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> AsyncGenerator[Any, Any]:
    """A direct call of an async generator task: an async generator that drives the run."""
    task_run, flow_ctx, parent = begin_call(task, parameters)
    return _drive_async(generator_steps(task, task_run, parameters, wait_for, flow_ctx, parent))
