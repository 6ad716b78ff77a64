"""Retries: counts, delays (number, list, callable, backoff, jitter), conditions, defaults, history,
and the log lines."""

from __future__ import annotations

import asyncio

import pytest
from _engine_support import capture_logs

from flowpod import flow, runtime, task
from flowpod._contract.retrying import jitter_bounds
from flowpod.context import TaskRunContext
from flowpod.tasks import exponential_backoff


def _flaky(fail_times: int, **options):
    attempts: list[int] = []
    runs = []

    @task(**options)
    def flaky() -> int:
        attempts.append(runtime.task_run.run_count)
        runs.append(TaskRunContext.get().task_run)  # type: ignore[union-attr]
        if len(attempts) <= fail_times:
            raise ValueError("boom")
        return len(attempts)

    return flaky, attempts, runs


def _waits(task_run) -> list[float]:
    """The scheduled delay of each AwaitingRetry state of a run."""
    return [
        (s.state_details.scheduled_time - s.timestamp).total_seconds()
        for s in task_run.history
        if s.name == "AwaitingRetry"
    ]


def test_retries_until_success_keeping_one_run() -> None:
    flaky, attempts, runs = _flaky(2, retries=2)
    assert flaky() == 3
    assert attempts == [1, 2, 3]
    assert len({r.id for r in runs}) == 1
    run = runs[0]
    assert [s.name for s in run.history] == [
        "Pending", "Running", "AwaitingRetry", "Retrying", "AwaitingRetry", "Retrying", "Completed",
    ]
    assert run.run_count == 3


def test_retries_exhausted_fail_with_the_last_exception() -> None:
    flaky, attempts, runs = _flaky(5, retries=1)
    with pytest.raises(ValueError, match="boom"):
        flaky()
    assert len(attempts) == 2
    assert runs[0].history[-1].name == "Failed"


def test_log_lines_of_retries() -> None:
    flaky, _, _ = _flaky(5, retries=2, retry_delay_seconds=[0.1, 0])
    with capture_logs() as logs:
        flaky(return_state=True)
    messages = logs.messages
    assert (
        "Task run failed with exception: ValueError('boom') - Retry 1/2 will start 0.1 "
        "second(s) from now"
    ) in messages
    assert (
        "Task run failed with exception: ValueError('boom') - Retry 2/2 will start immediately"
    ) in messages
    assert "Task run failed with exception: ValueError('boom') - Retries are exhausted" in messages


def test_delay_list_repeats_its_last_entry() -> None:
    flaky, _, runs = _flaky(3, retries=3, retry_delay_seconds=[0.01, 0.02])
    assert flaky() == 4
    assert [round(w, 2) for w in _waits(runs[0])] == [0.01, 0.02, 0.02]


def test_delay_callable_and_exponential_backoff() -> None:
    assert exponential_backoff(backoff_factor=10)(3) == [10, 20, 40]
    flaky, _, runs = _flaky(3, retries=3, retry_delay_seconds=exponential_backoff(0.01))
    assert flaky() == 4
    assert [round(w, 2) for w in _waits(runs[0])] == [0.01, 0.02, 0.04]


def test_jitter_is_applied_within_bounds() -> None:
    flaky, _, runs = _flaky(6, retries=6, retry_delay_seconds=0.02, retry_jitter_factor=1.0)
    assert flaky() == 7
    waits = _waits(runs[0])
    low, high = jitter_bounds(0.02, 1.0)
    assert all(low - 1e-3 <= w <= high + 1e-3 for w in waits)
    assert len({round(w, 6) for w in waits}) > 1  # varied, not the constant base


def test_retry_condition_fn_decides() -> None:
    seen = []

    def only_value_errors(task, task_run, state) -> bool:
        seen.append((task.name, task_run.run_count))
        try:
            state.result()
        except ValueError:
            return True
        except Exception:
            return False
        return False

    flaky, attempts, _ = _flaky(1, retries=3, retry_condition_fn=only_value_errors)
    assert flaky() == 2
    assert seen == [("flaky", 1)]

    calls = []

    @task(retries=3, retry_condition_fn=only_value_errors)
    def wrong_type() -> None:
        calls.append(1)
        raise KeyError("no retry")

    with pytest.raises(KeyError):
        wrong_type()
    assert len(calls) == 1


def test_retry_condition_consulted_only_while_retries_remain() -> None:
    consulted = []

    def always(task, task_run, state) -> bool:
        consulted.append(task_run.run_count)
        return True

    flaky, attempts, _ = _flaky(10, retries=2, retry_condition_fn=always)
    with pytest.raises(ValueError):
        flaky()
    assert consulted == [1, 2]
    assert len(attempts) == 3


def test_async_retry_condition_and_async_task() -> None:
    async def condition(task, task_run, state) -> bool:
        await asyncio.sleep(0)
        return task_run.run_count < 2

    attempts = []

    @task(retries=5, retry_condition_fn=condition)
    async def fails() -> None:
        attempts.append(1)
        raise ValueError("async boom")

    with pytest.raises(ValueError):
        asyncio.run(fails())
    assert len(attempts) == 2

    flaky, sync_attempts, _ = _flaky(10, retries=5, retry_condition_fn=condition)
    with pytest.raises(ValueError):
        flaky()
    assert len(sync_attempts) == 2


def test_raising_retry_condition_is_logged_and_not_retried() -> None:
    def broken(task, task_run, state) -> bool:
        raise RuntimeError("condition bug")

    flaky, attempts, _ = _flaky(1, retries=3, retry_condition_fn=broken)
    with capture_logs() as logs:
        with pytest.raises(ValueError):
            flaky()
    assert len(attempts) == 1
    assert any("retry_condition_fn" in m for m in logs.messages)


def test_defaults_from_settings_and_decorator_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRIES", "2")
    monkeypatch.setenv("FLOWPOD_TASK_DEFAULT_RETRY_DELAY_SECONDS", "0.01,0.02")
    flaky, attempts, runs = _flaky(2)
    assert flaky() == 3
    assert [round(w, 2) for w in _waits(runs[0])] == [0.01, 0.02]
    explicit, explicit_attempts, _ = _flaky(2, retries=0)
    with pytest.raises(ValueError):
        explicit()
    assert len(explicit_attempts) == 1


def test_defaults_from_the_profile_file() -> None:
    from flowpod._common.settings import set_profile_values

    set_profile_values({"FLOWPOD_TASK_DEFAULT_RETRIES": "1"})
    flaky, attempts, _ = _flaky(1)
    assert flaky() == 2


def test_on_failure_only_on_final_failure_and_on_running_each_attempt() -> None:
    events = []

    def on_running(task, task_run, state) -> None:
        events.append(("running", state.name))

    def on_failure(task, task_run, state) -> None:
        events.append(("failure", state.name))

    flaky, _, _ = _flaky(5, retries=1, on_running=[on_running], on_failure=[on_failure])
    with pytest.raises(ValueError):
        flaky()
    assert events == [("running", "Running"), ("running", "Retrying"), ("failure", "Failed")]


def test_task_run_name_resolved_once_across_retries() -> None:
    calls = []

    def namer() -> str:
        calls.append(1)
        return f"named-{len(calls)}"

    flaky, _, runs = _flaky(2, retries=2, task_run_name=namer)
    flaky()
    assert calls == [1] and runs[0].name == "named-1"


def test_flow_retries_rerun_the_body_with_the_same_run() -> None:
    ids = []

    @flow(retries=2, retry_delay_seconds=0)
    def f() -> int:
        ids.append(runtime.flow_run.id)
        if len(ids) < 3:
            raise RuntimeError("flow boom")
        return runtime.flow_run.run_count

    assert f() == 3
    assert len(set(ids)) == 1

    @flow(retries=1)
    def always_fails() -> None:
        raise RuntimeError("never")

    state = always_fails(return_state=True)
    assert state.is_failed()
