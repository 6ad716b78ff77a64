"""The pure after-failure rules shared with the operator."""

from __future__ import annotations

from flowpod._contract.retrying import RetryDecision
from flowpod._engine.transitions import state_after_failure
from flowpod.states import Failed


def test_state_after_failure() -> None:
    failed = Failed(message="x")
    assert state_after_failure(failed, RetryDecision(False, 0, 0.0), 100.0) is failed
    waiting = state_after_failure(failed, RetryDecision(True, 1, 2.5), 100.0)
    assert waiting.name == "AwaitingRetry" and waiting.is_scheduled()
    assert (waiting.state_details.scheduled_time - waiting.timestamp).total_seconds() == 2.5
