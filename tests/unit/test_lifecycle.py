"""The words of a task run's life after a failed attempt, shared by the local engine, the pod
program and the operator (flowpod._contract.lifecycle)."""

from __future__ import annotations

import logging

import pytest

from flowpod._contract.lifecycle import (
    AfterFailure,
    Schedule,
    after_failure,
    failure_log,
    failure_suffix,
    outcome_word,
)
from flowpod._contract.retrying import RetryDecision
from flowpod._contract.states import StateName, StateType

BOOM = ValueError("boom")


def test_failure_log_lines() -> None:
    level, msg, args = failure_log(BOOM, RetryDecision(True, 1, 0.1), 2, True, Schedule.LOCAL)
    assert level == logging.INFO
    assert msg % args == (
        "Task run failed with exception: ValueError('boom') - Retry 1/2 will start 0.1 second(s) "
        "from now"
    )
    level, msg, args = failure_log(BOOM, RetryDecision(True, 2, 0.0), 2, True, Schedule.LOCAL)
    assert msg % args == (
        "Task run failed with exception: ValueError('boom') - Retry 2/2 will start immediately"
    )
    level, msg, args = failure_log(BOOM, RetryDecision(False, 0, 0.0), 2, True, Schedule.LOCAL)
    assert level == logging.ERROR
    exhausted = "Task run failed with exception: ValueError('boom') - Retries are exhausted"
    assert msg % args == exhausted
    _, msg, args = failure_log(BOOM, RetryDecision(False, 0, 0.0), 2, False, Schedule.LOCAL)
    assert "retry_condition_fn declined" in msg % args


def test_a_pod_leaves_the_retry_to_the_operator() -> None:
    _, msg, args = failure_log(
        BOOM, RetryDecision(True, 1, 0.0), 3, True, Schedule.OPERATOR_PENDING
    )
    assert msg % args == (
        "Task run failed with exception: ValueError('boom') - Retry 1/3 will be scheduled by the "
        "operator"
    )


@pytest.mark.parametrize(
    ("decision", "retries", "allows", "expected"),
    [
        (RetryDecision(True, 1, 5.0), 2, True, "Retry 1/2 will start in 5 s"),
        (RetryDecision(True, 2, 0.0), 2, True, "Retry 2/2 will start immediately"),
        (RetryDecision(False, 0, 0.0), 2, True, "Retries are exhausted"),
        (RetryDecision(False, 0, 0.0), 2, False, "retry_condition_fn declined a retry"),
        (RetryDecision(False, 0, 0.0), 0, True, None),
    ],
)
def test_operator_suffixes(
    decision: RetryDecision, retries: int, allows: bool, expected: str | None
) -> None:
    assert failure_suffix(decision, retries, allows, Schedule.OPERATOR) == expected


def test_after_failure_names_the_verdict() -> None:
    assert after_failure(RetryDecision(True, 1, 0.0), 1, True) is AfterFailure.RETRY
    assert after_failure(RetryDecision(False, 0, 0.0), 1, False) is AfterFailure.DECLINED
    assert after_failure(RetryDecision(False, 0, 0.0), 1, True) is AfterFailure.EXHAUSTED
    assert after_failure(RetryDecision(False, 0, 0.0), 0, True) is AfterFailure.NO_RETRIES


@pytest.mark.parametrize(
    ("state_type", "name", "word"),
    [
        (StateType.COMPLETED, "Cached", StateName.COMPLETED),
        (StateType.FAILED, "TimedOut", StateName.TIMED_OUT),
        (StateType.FAILED, "Failed", StateName.FAILED),
        (StateType.CRASHED, "Crashed", StateName.CRASHED),
        (StateType.CANCELLED, "Cancelled", StateName.CRASHED),
    ],
)
def test_outcome_word(state_type: StateType, name: str, word: StateName) -> None:
    assert outcome_word(state_type, name) is word
