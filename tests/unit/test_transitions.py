"""The pure after-failure rules shared with the operator."""

from __future__ import annotations

import logging

from flowpod._contract.retrying import RetryDecision
from flowpod._engine.transitions import failure_log, state_after_failure
from flowpod.states import Failed, exception_to_failed_state


def test_state_after_failure() -> None:
    failed = Failed(message="x")
    assert state_after_failure(failed, RetryDecision(False, 0, 0.0), 100.0) is failed
    waiting = state_after_failure(failed, RetryDecision(True, 1, 2.5), 100.0)
    assert waiting.name == "AwaitingRetry" and waiting.is_scheduled()
    assert (waiting.state_details.scheduled_time - waiting.timestamp).total_seconds() == 2.5


def test_failure_log_lines() -> None:
    failed = exception_to_failed_state(ValueError("boom"), "Task run encountered an exception")
    level, msg, args = failure_log(failed, RetryDecision(True, 1, 0.1), 2)
    assert level == logging.INFO
    assert msg % args == (
        "Task run failed with exception: ValueError('boom') - Retry 1/2 will start 0.1 second(s) "
        "from now"
    )
    level, msg, args = failure_log(failed, RetryDecision(True, 2, 0.0), 2)
    assert msg % args == (
        "Task run failed with exception: ValueError('boom') - Retry 2/2 will start immediately"
    )
    level, msg, args = failure_log(failed, RetryDecision(False, 0, 0.0), 2)
    assert level == logging.ERROR
    exhausted = "Task run failed with exception: ValueError('boom') - Retries are exhausted"
    assert msg % args == exhausted
    _, msg, args = failure_log(failed, RetryDecision(False, 0, 0.0), 2, condition_allows=False)
    assert "retry_condition_fn declined" in msg % args
