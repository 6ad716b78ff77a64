"""The two drivers of the engine's step generators: one calls, the other awaits.

Every lifecycle of the engine (an attempt, the retries of a run, its hooks, a flow run) is written
once, as a generator of *steps*: plain code that ``yield``s an ``Effect`` wherever sync and async
runs differ (calling the task's function, waiting for an awaitable, sleeping, blocking on a lock)
and receives the effect's result back (or its exception, thrown in at the ``yield``). ``run_sync``
performs each effect by calling; ``run_async`` by awaiting. Nothing else tells the two apart, so a
rule changed in the steps is changed for both.

A steps generator that yields nothing costs one generator frame, which keeps the direct-call hot
path cheap.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Generator
from typing import Any, TypeVar

__all__ = ["Blocking", "Effect", "Sleep", "Steps", "Wait", "run_async", "run_sync"]

T = TypeVar("T")


class Effect:
    """Something the steps need done that a sync run calls and an async run awaits."""

    __slots__ = ()

    def run_sync(self) -> Any:
        raise NotImplementedError

    async def run_async(self) -> Any:
        raise NotImplementedError


# A steps generator: yields Effects, is sent their results, returns T.
Steps = Generator[Effect, Any, T]


class Wait(Effect):
    """The outcome of a user callable (hook, retry condition) that may be awaitable.

    Sync: a coroutine is run to completion (``run_coro_sync``), anything else is the value itself;
    async: an awaitable is awaited.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def run_sync(self) -> Any:
        if inspect.iscoroutine(self.value):
            from flowpod._common.asyncutils import run_coro_sync

            return run_coro_sync(self.value)
        return self.value

    async def run_async(self) -> Any:
        if inspect.isawaitable(self.value):
            return await self.value
        return self.value


class Sleep(Effect):
    """Wait ``seconds`` before the next attempt (nothing at all for 0 in a sync run)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run_sync(self) -> None:
        if self.seconds > 0:
            time.sleep(self.seconds)

    async def run_async(self) -> None:
        import asyncio

        await asyncio.sleep(self.seconds)


class Blocking(Effect):
    """A call that may block (waiting on futures, a lock, a pool): off the event loop when async."""

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def run_sync(self) -> Any:
        return self.fn(*self.args)

    async def run_async(self) -> Any:
        import asyncio

        return await asyncio.to_thread(self.fn, *self.args)


def run_sync(steps: Steps[T]) -> T:
    """Drive ``steps`` to their return value, performing each effect by calling it."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            send = effect.run_sync()
        except BaseException as exc:  # noqa: BLE001 - thrown back into the steps
            send, error = None, exc


async def run_async(steps: Steps[T]) -> T:
    """Drive ``steps`` to their return value, performing each effect by awaiting it."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = steps.send(send) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        error = None
        try:
            send = await effect.run_async()
        except BaseException as exc:  # noqa: BLE001 - thrown back into the steps
            send, error = None, exc
