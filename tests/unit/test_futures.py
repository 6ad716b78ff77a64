"""submit / map / futures / wait_for / unmapped / quote, and the default thread-pool runner."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowpod import allow_failure, flow, quote, task, unmapped
from flowpod.exceptions import MappingLengthMismatch, MappingMissingIterable, UpstreamTaskError
from flowpod.futures import FlowpodFuture, FlowpodFutureList, as_completed, wait
from flowpod.states import StateType
from flowpod.task_runners import ThreadPoolTaskRunner


@task
def add(x: int, y: int = 0) -> int:
    return x + y


@task
def fail(msg: str = "boom") -> None:
    raise ValueError(msg)


def test_submit_returns_a_future_with_state_and_result() -> None:
    @flow
    def f() -> tuple:
        future = add.submit(1, 2)
        assert isinstance(future, FlowpodFuture)
        future.wait()
        return future.state.type, future.result(), future.task_run_id

    kind, result, run_id = f()
    assert kind is StateType.COMPLETED and result == 3 and run_id is not None


def test_submitted_tasks_run_in_worker_threads_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)

    @task
    def meet() -> str:
        barrier.wait()  # only passes when three runs are in flight at once
        return threading.current_thread().name

    @flow
    def f() -> list[str]:
        return [fut.result() for fut in [meet.submit() for _ in range(3)]]

    names = f()
    assert all(name.startswith("flowpod-task") for name in names)


def test_futures_passed_as_arguments_are_resolved() -> None:
    @flow
    def f() -> int:
        a = add.submit(1, 1)
        b = add.submit(a, 10)
        return add(b, a)

    assert f() == 14


def test_failed_upstream_in_wait_for_gives_not_ready_without_running() -> None:
    ran = []

    @task
    def downstream() -> None:
        ran.append(1)

    @flow
    def f() -> dict:
        up = fail.submit()
        down = downstream.submit(wait_for=[up])
        down.wait()
        with pytest.raises(UpstreamTaskError, match="fail-0"):
            down.result()
        return {"name": down.state.name, "type": down.state.type}

    assert f() == {"name": "NotReady", "type": StateType.PENDING}
    assert ran == []


def test_failed_upstream_as_argument_gives_not_ready() -> None:
    @flow
    def f() -> str:
        up = fail.submit()
        return add.submit(up, return_state=True).name

    assert f() == "NotReady"


def test_allow_failure_runs_downstream_anyway() -> None:
    @task
    def report(value: object) -> str:
        return type(value).__name__

    @flow
    def f() -> str:
        up = fail.submit()
        return report(allow_failure(up))

    assert f() == "ValueError"


def test_wait_for_a_completed_upstream_orders_runs() -> None:
    order: list[str] = []

    @task
    def first() -> None:
        time.sleep(0.05)
        order.append("first")

    @task
    def second() -> None:
        order.append("second")

    @flow
    def f() -> None:
        a = first.submit()
        second.submit(wait_for=[a]).wait()

    f()
    assert order == ["first", "second"]


def test_direct_call_with_wait_for() -> None:
    @flow
    def f() -> int:
        a = add.submit(1)
        return add(2, wait_for=[a])

    assert f() == 2


def test_map_zips_iterables_with_unmapped_and_quote() -> None:
    @task
    def combine(x: int, y: int, extra: object) -> tuple:
        return x, y, extra

    @flow
    def f() -> list:
        futures = combine.map([1, 2], [3, 4], unmapped([9, 9]))
        assert isinstance(futures, FlowpodFutureList)
        quoted = combine.map([1], [2], quote((5,)))
        return futures.result() + quoted.result()

    assert f() == [(1, 3, [9, 9]), (2, 4, [9, 9]), (1, 2, (5,))]


def test_map_over_futures_and_strings_are_not_iterated() -> None:
    @task
    def make() -> list[int]:
        return [1, 2, 3]

    @task
    def label(x: int, prefix: str) -> str:
        return f"{prefix}{x}"

    @flow
    def f() -> list[str]:
        return label.map(make.submit(), "n").result()

    assert f() == ["n1", "n2", "n3"]


def test_map_errors() -> None:
    @flow
    def mismatch() -> None:
        add.map([1, 2], [1])

    with pytest.raises(MappingLengthMismatch, match="same length"):
        mismatch()

    @flow
    def nothing() -> None:
        add.map(1, 2)

    with pytest.raises(MappingMissingIterable, match="iterable"):
        nothing()


def test_map_return_state() -> None:
    @flow
    def f() -> list:
        return add.map([1, 2], return_state=True)

    states = f()
    assert [s.result() for s in states] == [1, 2]


def test_result_timeout_and_raise_on_failure() -> None:
    release = threading.Event()

    @task
    def slow() -> int:
        release.wait(5)
        return 1

    @flow
    def f() -> tuple:
        fut = slow.submit()
        with pytest.raises(TimeoutError):
            fut.result(timeout=0.05)
        release.set()
        failing = fail.submit("nope")
        exc = failing.result(raise_on_failure=False)
        return fut.result(timeout=5), exc

    value, exc = f()
    assert value == 1 and isinstance(exc, ValueError)


def test_state_of_a_running_future_is_not_final() -> None:
    release = threading.Event()
    started = threading.Event()

    @task
    def slow() -> None:
        started.set()
        release.wait(5)

    @flow
    def f() -> tuple:
        fut = slow.submit()
        assert started.wait(5)
        running = fut.state.type
        release.set()
        fut.wait()
        return running, fut.state.type

    assert f() == (StateType.RUNNING, StateType.COMPLETED)


def test_add_done_callback_and_module_wait_and_as_completed() -> None:
    called: list[FlowpodFuture] = []
    gates = [threading.Event() for _ in range(3)]

    @task
    def gated(i: int) -> int:
        gates[i].wait(5)
        return i

    @flow
    def f() -> tuple:
        futures = [gated.submit(i) for i in range(3)]
        futures[0].add_done_callback(called.append)
        done, not_done = wait(futures, timeout=0.05)
        assert not done and len(not_done) == 3
        order = []
        gates[2].set()
        iterator = as_completed(futures, timeout=5)
        order.append(next(iterator).result())
        gates[0].set()
        order.append(next(iterator).result())
        gates[1].set()
        order.append(next(iterator).result())
        done, not_done = wait(futures)
        return order, len(done), len(not_done)

    assert f() == ([2, 0, 1], 3, 0)
    assert len(called) == 1


def test_as_completed_times_out() -> None:
    release = threading.Event()

    @task
    def slow() -> None:
        release.wait(5)

    @flow
    def f() -> None:
        fut = slow.submit()
        with pytest.raises(TimeoutError):
            list(as_completed([fut], timeout=0.05))
        release.set()

    f()


def test_unused_failed_future_does_not_fail_the_flow() -> None:
    @flow
    def f() -> str:
        fail.submit()
        return "fine"

    assert f() == "fine"


def test_returned_futures_are_aggregated() -> None:
    @flow
    def good():
        return [add.submit(1), add.submit(2)]

    state = good(return_state=True)
    assert state.is_completed() and state.message == "All states completed."

    @flow
    def bad():
        return [add.submit(1), fail.submit()]

    state = bad(return_state=True)
    assert state.is_failed() and state.message == "1/2 states failed."
    with pytest.raises(ValueError, match="boom"):
        bad()


def test_submit_async_task_and_async_concurrency() -> None:
    @task
    async def nap(x: int) -> int:
        await asyncio.sleep(0.3)
        return x

    @flow
    def sync_flow() -> list[int]:
        return [f.result() for f in [nap.submit(i) for i in range(3)]]

    assert sync_flow() == [0, 1, 2]

    @flow
    async def async_flow() -> tuple[list[int], float]:
        start = time.perf_counter()
        values = await asyncio.gather(*(nap(i) for i in range(5)))
        return list(values), time.perf_counter() - start

    values, elapsed = asyncio.run(async_flow())
    assert values == [0, 1, 2, 3, 4]
    assert elapsed < 0.3 * 5 * 0.6  # concurrent, not sequential


def test_submit_return_state() -> None:
    @flow
    def f():
        state = add.submit(1, return_state=True)
        assert state.is_completed()
        return state  # a returned state becomes the flow's final state

    assert f() == 1


def test_thread_pool_is_lazy_and_validates_max_workers() -> None:
    runner = ThreadPoolTaskRunner()
    assert runner._executor is None
    with pytest.raises(ValueError):
        ThreadPoolTaskRunner(max_workers=0)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f() -> list[int]:
        return add.map([1, 2, 3]).result()

    assert f() == [1, 2, 3]


def test_allow_failure_in_wait_for_and_map_wait_for() -> None:
    ran = []

    @task
    def after(x: int) -> int:
        ran.append(x)
        return x

    @flow
    def f() -> list:
        up = fail.submit()
        ok = add.submit(1)
        mapped = after.map([1, 2], wait_for=[ok, allow_failure(up)])
        blocked = after.map([3], wait_for=[up])
        blocked.wait()
        return [mapped.result(), [fut.state.name for fut in blocked]]

    assert f() == [[1, 2], ["NotReady"]]
    assert sorted(ran) == [1, 2]


def test_nested_collections_of_futures_are_resolved() -> None:
    @task
    def total(values: dict) -> int:
        return sum(values["xs"]) + values["t"][0]

    @flow
    def f() -> int:
        a, b = add.submit(1), add.submit(2)
        return total({"xs": [a, b], "t": (add.submit(10),)})

    assert f() == 13


def test_the_thread_pool_runner_pickles_as_a_fresh_runner() -> None:
    import pickle

    from flowpod.task_runners import ThreadPoolTaskRunner

    runner = ThreadPoolTaskRunner(max_workers=3)
    runner._pool()  # a live pool and a lock: neither may travel
    copy = pickle.loads(pickle.dumps(runner))
    assert isinstance(copy, ThreadPoolTaskRunner)
    assert copy.max_workers == 3
    assert copy._executor is None
    runner.__exit__()
