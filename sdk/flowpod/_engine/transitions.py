"""Pure rules for what follows a failed attempt, shared by the local engine and the operator.

``flowpod._contract.retrying.decide_retry`` says whether to retry and when; these turn that decision
into the
next state of the run and into the log line that explains it, so a task run looks and reads the same
whether its attempts ran in this process or as pods.
"""

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
