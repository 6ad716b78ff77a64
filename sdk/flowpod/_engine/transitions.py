"""The state a run enters after a failed attempt, in the local engine: AwaitingRetry, scheduled
when ``flowpod._contract.retrying.decide_retry`` says to retry, else the failed state itself.

The operator writes the same transition into a TaskRun's status (``_contract.status``); the
decision and its words are the contract's, only the record differs."""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

from flowpod.states import AwaitingRetry, State

if TYPE_CHECKING:
    from flowpod._contract.retrying import RetryDecision

__all__ = ["state_after_failure"]


def state_after_failure(failed: State[Any], decision: RetryDecision, now: float) -> State[Any]:
    """AwaitingRetry scheduled ``decision.delay_seconds`` after ``now`` (epoch seconds) when the
    decision is to retry; otherwise the failed state itself, which is final."""
    if not decision.retry:
        return failed
    when = datetime.datetime.fromtimestamp(now + decision.delay_seconds, tz=datetime.UTC)
    return AwaitingRetry(scheduled_time=when, timestamp=now)
