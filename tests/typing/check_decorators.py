# mypy: warn-unused-ignores
"""Static typing checks for the decorators (run by mypy, never executed): ``@task`` and ``@flow``
keep the function's signature and return type."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

from flowpod import Flow, Task, flow, task
from flowpod.futures import FlowpodFuture, FlowpodFutureList


@task
def bare(x: int, y: str = "a") -> float:
    return float(x)


@task(retries=2, name="named")
def called(x: int) -> list[str]:
    return [str(x)]


@task
async def asynchronous(x: int) -> int:
    return x


@flow
def a_flow(n: int) -> str:
    return str(n)


@flow(name="other")
async def an_async_flow() -> None:
    return None


assert_type(bare(1), float)
assert_type(bare(1, y="b"), float)
assert_type(called(3), list[str])
coroutine: Coroutine[Any, Any, int] = asynchronous(1)
assert_type(bare.submit(1), FlowpodFuture[float])
assert_type(bare.map([1, 2]), FlowpodFutureList[float])
assert_type(a_flow(1), str)
flow_coroutine: Coroutine[Any, Any, None] = an_async_flow()
assert_type(bare.with_options(retries=1)(2), float)
task_object: Task[..., float] = bare
flow_object: Flow[..., str] = a_flow
bare("not an int")  # type: ignore[arg-type]
