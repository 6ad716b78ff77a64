"""Pure rules for what follows a failed attempt, shared by the local engine and the operator.

``flowpod._contract.retrying.decide_retry`` says whether to retry and when; these turn that decision
into the
next state of the run and into the log line that explains it, so a task run looks and reads the same
whether its attempts ran in this process or as pods.
"""

from __future__ import annotations

import datetime
import logging
from typing import TYPE_CHECKING, Any

from flowpod.states import AwaitingRetry, State, get_state_exception

if TYPE_CHECKING:
    from flowpod._contract.retrying import RetryDecision

__all__ = ["failure_log", "state_after_failure"]


def state_after_failure(failed: State[Any], decision: RetryDecision, now: float) -> State[Any]:
    """AwaitingRetry scheduled ``decision.delay_seconds`` after ``now`` (epoch seconds) when the
    decision is to retry; otherwise the failed state itself, which is final."""
    if not decision.retry:
        return failed
    when = datetime.datetime.fromtimestamp(now + decision.delay_seconds, tz=datetime.UTC)
    return AwaitingRetry(scheduled_time=when, timestamp=now)


def failure_log(
    failed: State[Any], decision: RetryDecision, retries: int, condition_allows: bool = True
) -> tuple[int, str, tuple[Any, ...]]:
    """The level, message and arguments of the log line for a failed attempt, e.g.
    ``Task run failed with exception: ValueError('boom') - Retry 1/2 will start 0.1 second(s)
    from now`` or ``... - Retries are exhausted``."""
    exc = get_state_exception(failed)
    if decision.retry:
        delay = decision.delay_seconds
        when = f"{delay:g} second(s) from now" if delay else "immediately"
        return (
            logging.INFO,
            "Task run failed with exception: %r - Retry %s/%s will start %s",
            (exc, decision.retry_number, retries, when),
        )
    if not condition_allows:
        return (
            logging.ERROR,
            "Task run failed with exception: %r - retry_condition_fn declined a retry",
            (exc,),
        )
    return logging.ERROR, "Task run failed with exception: %r - Retries are exhausted", (exc,)
