"""Generator tasks: yielded values stream lazily; a returned generator is consumed into a list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from flowpod import flow, task
from flowpod.context import TaskRunContext
from flowpod.states import StateType


def test_sync_generator_yields_lazily_and_is_running_meanwhile() -> None:
    events: list[str] = []
    runs = []

    @task
    def numbers(n: int) -> Iterator[int]:
        ctx = TaskRunContext.get()
        assert ctx is not None
        runs.append(ctx.task_run)
        for i in range(n):
            events.append(f"yield {i}")
            yield i

    @flow
    def f() -> list[int]:
        out = []
        gen = numbers(3)
        assert events == []  # nothing ran before the first next()
        for value in gen:
            events.append(f"got {value}")
            assert runs[0].state.type is StateType.RUNNING
            # The consumer is not inside the task run.
            assert TaskRunContext.get() is None
        out.extend([1])
        return [e for e in events]

    assert f() == ["yield 0", "got 0", "yield 1", "got 1", "yield 2", "got 2"]
    assert runs[0].state.type is StateType.COMPLETED
    assert [s.name for s in runs[0].history] == ["Pending", "Running", "Completed"]


def test_yielded_values_feed_other_tasks() -> None:
    @task
    def items() -> Iterator[int]:
        yield from range(4)

    @task
    def square(x: int) -> int:
        return x * x

    @flow
    def f() -> list[int]:
        return [square(x) for x in items()]

    assert f() == [0, 1, 4, 9]


def test_returned_generator_is_consumed_into_a_list() -> None:
    @task
    def make() -> Iterator[int]:
        return (i * 2 for i in range(3))

    @flow
    def f() -> tuple[list[int], list[int]]:
        return make(), make.submit().result()

    assert f() == ([0, 2, 4], [0, 2, 4])


def test_yielded_generator_is_not_consumed() -> None:
    @task
    def outer() -> Iterator[Iterator[int]]:
        yield (i for i in range(3))

    gens = list(outer())
    assert len(gens) == 1
    assert list(gens[0]) == [0, 1, 2]


def test_generator_failure_fails_the_run() -> None:
    runs = []

    @task
    def broken() -> Iterator[int]:
        runs.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        yield 1
        raise ValueError("mid-stream")

    gen = broken()
    assert next(gen) == 1
    with pytest.raises(ValueError, match="mid-stream"):
        next(gen)
    assert runs[0].state.is_failed()


def test_async_generator_task() -> None:
    runs = []

    @task
    async def ticks(n: int) -> AsyncIterator[int]:
        runs.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        for i in range(n):
            await asyncio.sleep(0)
            yield i

    @flow
    async def f() -> list[int]:
        seen = []
        async for value in ticks(3):
            assert runs[0].state.type is StateType.RUNNING
            seen.append(value)
        return seen

    assert asyncio.run(f()) == [0, 1, 2]
    assert runs[0].state.type is StateType.COMPLETED
