"""Timeouts stop the task's code: TimedOut state, TaskRunTimeoutError, and no statement after the
deadline runs (main thread, worker threads, async)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from flowpod import flow, task
from flowpod.exceptions import FlowRunTimeoutError, TaskRunTimeoutError
from flowpod.states import StateType

SLEEP = 0.8


def _sleeper(after: threading.Event, **options):
    @task(timeout_seconds=0.1, **options)
    def sleeper() -> str:
        time.sleep(SLEEP)
        after.set()  # must never run
        return "finished"

    return sleeper


def test_main_thread_sync_task_is_interrupted() -> None:
    assert threading.current_thread() is threading.main_thread()
    after = threading.Event()
    sleeper = _sleeper(after)
    start = time.monotonic()
    state = sleeper(return_state=True)
    assert time.monotonic() - start < SLEEP - 0.15
    assert state.name == "TimedOut" and state.type is StateType.FAILED
    assert state.message == "Task run exceeded timeout of 0.1 second(s)"
    with pytest.raises(TaskRunTimeoutError) as info:
        state.result()
    assert isinstance(info.value, TimeoutError)
    assert not after.wait(SLEEP)


def test_worker_thread_sync_task_returns_at_deadline_and_stops() -> None:
    after = threading.Event()
    sleeper = _sleeper(after)

    @flow
    def f() -> tuple:
        start = time.monotonic()
        future = sleeper.submit()
        future.wait()
        return future.state, time.monotonic() - start

    state, elapsed = f()
    assert state.name == "TimedOut"
    assert elapsed < SLEEP - 0.15
    # Even once the blocked sleep returns, the statement after it never runs.
    assert not after.wait(SLEEP + 0.5)


def test_sync_task_in_a_plain_thread_is_stopped() -> None:
    after = threading.Event()
    sleeper = _sleeper(after)
    out = {}

    def run() -> None:
        out["state"] = sleeper(return_state=True)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert out["state"].name == "TimedOut"
    assert not after.wait(SLEEP + 0.5)


def test_busy_loop_is_interrupted_in_worker_thread() -> None:
    reached = threading.Event()

    @task(timeout_seconds=0.1)
    def spin() -> None:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            pass
        reached.set()

    @flow
    def f():
        return spin.submit(return_state=True).name

    assert f() == "TimedOut"
    assert not reached.wait(2.5)


def test_async_task_is_cancelled() -> None:
    after = threading.Event()

    @task(timeout_seconds=0.1)
    async def nap() -> None:
        await asyncio.sleep(SLEEP)
        after.set()

    start = time.monotonic()
    state = asyncio.run(nap(return_state=True))
    assert time.monotonic() - start < SLEEP - 0.15
    assert state.name == "TimedOut"
    with pytest.raises(TaskRunTimeoutError):
        state.result()
    assert not after.is_set()


def test_timeouts_go_through_retries() -> None:
    attempts = []

    @task(timeout_seconds=0.1, retries=2)
    def slow_then_fast() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            time.sleep(SLEEP)
        return "ok"

    assert slow_then_fast() == "ok"
    assert len(attempts) == 3


def test_completing_before_the_deadline_is_unaffected() -> None:
    @task(timeout_seconds=2)
    def quick() -> int:
        return 1

    @flow
    def f() -> tuple[int, int]:
        return quick(), quick.submit().result()

    assert f() == (1, 1)


def test_task_exceptions_pass_through_the_timeout_machinery() -> None:
    @task(timeout_seconds=2)
    def bad() -> None:
        raise KeyError("inner")

    @flow
    def f():
        return bad.submit().result(raise_on_failure=False)

    assert isinstance(f(), KeyError)
    with pytest.raises(KeyError):
        bad()


def test_flow_timeout_stops_the_flow() -> None:
    after = threading.Event()

    @flow(timeout_seconds=0.1)
    def slow_flow() -> None:
        time.sleep(SLEEP)
        after.set()

    start = time.monotonic()
    state = slow_flow(return_state=True)
    assert time.monotonic() - start < SLEEP - 0.15
    assert state.name == "TimedOut" and state.is_failed()
    assert state.message == "Flow run exceeded timeout of 0.1 second(s)"
    with pytest.raises(FlowRunTimeoutError):
        slow_flow()
    assert not after.wait(SLEEP)


def test_nested_task_and_flow_timeouts() -> None:
    @task(timeout_seconds=0.1)
    def inner() -> None:
        time.sleep(SLEEP)

    @flow(timeout_seconds=5)
    def outer() -> str:
        return inner(return_state=True).name

    assert outer() == "TimedOut"


def test_async_flow_timeout() -> None:
    @flow(timeout_seconds=0.1)
    async def slow() -> None:
        await asyncio.sleep(SLEEP)

    state = asyncio.run(slow(return_state=True))
    assert state.name == "TimedOut"


MAIN_THREAD_SCRIPT = """
import threading, time
from flowpod import flow, task

after = []

@task(timeout_seconds=0.1)
def sleeper():
    after.append(threading.current_thread().name)
    time.sleep(3)
    after.append("after")

@flow(timeout_seconds=5)
def outer():
    return sleeper(return_state=True).name

start = time.monotonic()
name = outer()
print(name, after, round(time.monotonic() - start, 1) < 1.0)
"""


def test_main_thread_uses_the_signal_timer_in_a_plain_process() -> None:
    # pytest-timeout owns SIGALRM in this process, so the engine falls back to a helper thread
    # here; a fresh process shows the signal path (the body runs on the main thread itself).
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", MAIN_THREAD_SCRIPT], capture_output=True, text=True, timeout=30,
        env={**os.environ, "FLOWPOD_LOGGING_LEVEL": "ERROR"}, check=True,
    )
    assert out.stdout.strip() == "TimedOut ['MainThread'] True"


def test_flow_timeout_in_a_plain_thread() -> None:
    after = threading.Event()

    @flow(timeout_seconds=0.1)
    def slow_flow() -> None:
        time.sleep(SLEEP)
        after.set()

    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("s", slow_flow(return_state=True)))
    start = time.monotonic()
    thread.start()
    thread.join(5)
    assert out["s"].name == "TimedOut" and time.monotonic() - start < SLEEP - 0.1
    assert not after.wait(SLEEP + 0.5)


def test_submitted_async_task_times_out() -> None:
    after = threading.Event()

    @task(timeout_seconds=0.1)
    async def nap() -> None:
        await asyncio.sleep(SLEEP)
        after.set()

    @flow
    def f() -> str:
        return nap.submit(return_state=True).name

    start = time.monotonic()
    assert f() == "TimedOut"
    assert time.monotonic() - start < SLEEP - 0.15
    assert not after.is_set()


def test_generator_task_timeout_applies_to_the_whole_run() -> None:
    from collections.abc import Iterator

    @task(timeout_seconds=0.2)
    def slow_stream() -> Iterator[int]:
        for i in range(10):
            time.sleep(0.05)
            yield i

    seen = []
    with pytest.raises(TaskRunTimeoutError):
        for value in slow_stream():
            seen.append(value)
    assert 1 <= len(seen) < 10
