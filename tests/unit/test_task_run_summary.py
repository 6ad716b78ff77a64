"""The line that ends a flow run with many task runs (or a failed one): counts by final state."""

from __future__ import annotations

import logging
import threading

from _engine_support import Records, capture_logs

from flowpod import flow, task
from flowpod.cache_policies import INPUTS
from flowpod.context.tally import SUMMARY_MIN_TASK_RUNS, TaskRunTally
from flowpod.states import Cached, Completed, Crashed, Failed, NotReady


@task
def work(i: int) -> int:
    if i < 0:
        raise ValueError(f"bad item {i}")
    return i


def _summaries(logs: Records) -> list[logging.LogRecord]:
    return [r for r in logs.records if " task run" in r.getMessage()
            and r.getMessage()[0].isdigit()]


def test_a_big_map_ends_with_one_summary_line_before_the_final_state() -> None:
    @flow
    def big() -> int:
        futures = work.map([*range(998), -1, -2])
        return sum(f.result() for f in futures if f.state.is_completed())

    with capture_logs() as logs:
        big()
    [summary] = _summaries(logs)
    assert summary.levelno == logging.INFO
    assert summary.name == "flowpod.flow_runs"
    assert summary.getMessage() == "1,000 task runs: 998 Completed, 2 Failed (see above)"
    messages = logs.messages
    index = messages.index(summary.getMessage())
    assert messages[index + 1].startswith("Finished in state Completed")
    # The per-run failure lines the summary points at are still there.
    failed = [m for m in messages if m.startswith("Finished in state Failed")]
    assert len(failed) == 2


def test_all_completed_has_no_see_above() -> None:
    @flow
    def ten() -> None:
        work.map(range(SUMMARY_MIN_TASK_RUNS)).wait()

    with capture_logs() as logs:
        ten()
    assert [r.getMessage() for r in _summaries(logs)] == ["10 task runs: 10 Completed"]


def test_a_small_flow_that_completed_gets_no_summary() -> None:
    @flow
    def small() -> list[int]:
        return [work(1), work.submit(2).result()]

    with capture_logs() as logs:
        assert small() == [1, 2]
    assert _summaries(logs) == []


def test_a_small_flow_with_a_failure_gets_a_summary() -> None:
    @flow
    def small() -> None:
        work.submit(1).wait()
        work.submit(-1).wait()

    with capture_logs() as logs:
        small()
    assert [r.getMessage() for r in _summaries(logs)] == [
        "2 task runs: 1 Completed, 1 Failed (see above)"
    ]


def test_direct_calls_cached_and_not_ready_runs_are_counted_by_name() -> None:
    @task(cache_policy=INPUTS)
    def cached(x: int) -> int:
        return x

    @flow
    def mixed() -> None:
        for _ in range(9):
            cached(1)  # one Completed, then eight Cached
        failed = work.submit(-1)
        work.submit(3, wait_for=[failed]).wait()

    with capture_logs() as logs:
        mixed()
    assert [r.getMessage() for r in _summaries(logs)] == [
        "11 task runs: 8 Cached, 1 Completed, 1 Failed, 1 NotReady (see above)"
    ]


def test_nested_task_runs_count_in_the_flow_run() -> None:
    @task
    def outer() -> int:
        return sum(work(i) for i in range(SUMMARY_MIN_TASK_RUNS))

    @flow
    def nested() -> int:
        return outer()

    with capture_logs() as logs:
        assert nested() == 45
    assert [r.getMessage() for r in _summaries(logs)] == ["11 task runs: 11 Completed"]


def test_each_flow_run_counts_only_its_own_task_runs() -> None:
    @flow
    def child() -> None:
        work.map(range(SUMMARY_MIN_TASK_RUNS)).wait()

    @flow
    def parent() -> None:
        child()
        work(1)

    with capture_logs() as logs:
        parent()
    # The child's ten runs are its own; the parent made one (and a subflow is not a task run).
    assert [r.getMessage() for r in _summaries(logs)] == ["10 task runs: 10 Completed"]


def test_each_flow_attempt_has_its_own_summary() -> None:
    attempts: list[int] = []

    @flow(retries=1)
    def flaky() -> None:
        attempts.append(1)
        work.map(range(SUMMARY_MIN_TASK_RUNS)).wait()
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    with capture_logs() as logs:
        flaky()
    assert [r.getMessage() for r in _summaries(logs)] == ["10 task runs: 10 Completed"] * 2


def test_tally_format_and_threshold() -> None:
    tally = TaskRunTally()
    assert tally.summary() is None
    for _ in range(SUMMARY_MIN_TASK_RUNS - 1):
        tally.count_created()
        tally.count_final(Completed())
    assert tally.summary() is None  # few, all completed: the per-run lines suffice
    for _ in range(1_226):
        tally.count_created()
        tally.count_final(Completed())
    tally.count_created()
    tally.count_final(Crashed())
    tally.count_created()  # never finished
    assert tally.summary() == "1,237 task runs: 1,235 Completed, 1 Crashed, 1 not finished " \
                              "(see above)"
    assert tally.failed and tally.counts() == {"Completed": 1_235, "Crashed": 1}


def test_a_single_failure_and_cached_only() -> None:
    one = TaskRunTally()
    one.count_created()
    one.count_final(Failed())
    assert one.summary() == "1 task run: 1 Failed (see above)"
    cached = TaskRunTally()
    for _ in range(12):
        cached.count_created()
        cached.count_final(Cached())
    assert cached.summary() == "12 task runs: 12 Cached" and not cached.failed
    not_ready = TaskRunTally()
    not_ready.count_created()
    not_ready.count_final(NotReady())
    assert not not_ready.failed  # NotReady is not a failure of this run, but is not complete
    assert not_ready.summary() == "1 task run: 1 NotReady (see above)"


def test_the_tally_counts_from_many_threads() -> None:
    tally = TaskRunTally()

    def count() -> None:
        for _ in range(2_000):
            tally.count_created()
            tally.count_final(Completed())

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tally.summary() == "8,000 task runs: 8,000 Completed"


def test_no_summary_when_info_is_off() -> None:
    @flow
    def big() -> None:
        work.map(range(SUMMARY_MIN_TASK_RUNS)).wait()

    with capture_logs(logging.WARNING) as logs:
        big()
    assert _summaries(logs) == []
