"""What follows an attempt of a task run, in words: the verdict after a failure and the lines
that explain it.

``retrying.decide_retry`` answers whether and when; this module names the answer (retry,
declined by ``retry_condition_fn``, retries exhausted) and writes the sentence a user reads
about it, so a run reads the same whether its attempts ran in this process (the local engine's
log), in a pod (the pod's log) or were concluded by the operator (the TaskRun's status message
and event). Only the scheduling clause differs, because who starts the retry differs.
"""

from __future__ import annotations

import enum
import logging

from flowpod._contract.retrying import RetryDecision
from flowpod._contract.states import StateName, StateType

__all__ = [
    "CONDITION_ERROR_LOG",
    "AfterFailure",
    "Schedule",
    "after_failure",
    "failure_log",
    "failure_suffix",
    "outcome_word",
]

CONDITION_ERROR_LOG = (
    "An error was encountered while running `retry_condition_fn` check for task %r; "
    "not retrying"
)
"""Logged (with the traceback) when retry_condition_fn raised: the failure is then final."""


class AfterFailure(enum.Enum):
    """What a failed attempt leads to."""

    RETRY = "retry"
    DECLINED = "declined"
    """retry_condition_fn said no (or raised) while retries remained."""
    EXHAUSTED = "exhausted"
    """Every configured retry was used."""
    NO_RETRIES = "no retries"
    """The run had no retries to use."""


class Schedule(enum.Enum):
    """Who starts the retry, which decides how its start is worded."""

    LOCAL = "local"
    """This process sleeps and retries: ``will start 2 second(s) from now``."""
    OPERATOR_PENDING = "operator pending"
    """A pod reports the failure; the operator will choose the delay."""
    OPERATOR = "operator"
    """The operator has scheduled it: ``will start in 2 s``."""


def after_failure(decision: RetryDecision, retries: int, condition_allows: bool) -> AfterFailure:
    """Name the verdict of ``decide_retry`` for a run with ``retries`` retries configured."""
    if decision.retry:
        return AfterFailure.RETRY
    if not condition_allows:
        return AfterFailure.DECLINED
    return AfterFailure.EXHAUSTED if retries else AfterFailure.NO_RETRIES


def _when(delay: float, schedule: Schedule) -> str:
    if schedule is Schedule.OPERATOR_PENDING:
        return "be scheduled by the operator"
    if not delay:
        return "start immediately"
    if schedule is Schedule.OPERATOR:
        return f"start in {delay:g} s"
    return f"start {delay:g} second(s) from now"


def failure_suffix(
    decision: RetryDecision, retries: int, condition_allows: bool, schedule: Schedule
) -> str | None:
    """The clause after a failure's description: ``Retry 1/2 will start in 5 s``,
    ``retry_condition_fn declined a retry``, ``Retries are exhausted``; None when the run had no
    retries and the schedule is the operator's (its status then says only what failed)."""
    verdict = after_failure(decision, retries, condition_allows)
    if verdict is AfterFailure.RETRY:
        when = _when(decision.delay_seconds, schedule)
        return f"Retry {decision.retry_number}/{retries} will {when}"
    if verdict is AfterFailure.DECLINED:
        return "retry_condition_fn declined a retry"
    if verdict is AfterFailure.NO_RETRIES and schedule is Schedule.OPERATOR:
        return None
    return "Retries are exhausted"


def failure_log(
    exc: BaseException | None,
    decision: RetryDecision,
    retries: int,
    condition_allows: bool,
    schedule: Schedule,
) -> tuple[int, str, tuple[object, ...]]:
    """The level, message and arguments of the log line for a failed attempt, e.g.
    ``Task run failed with exception: ValueError('boom') - Retry 1/2 will start 0.1 second(s)
    from now``: INFO when a retry follows, ERROR when the failure is final."""
    suffix = failure_suffix(decision, retries, condition_allows, schedule)
    level = logging.INFO if decision.retry else logging.ERROR
    return level, f"Task run failed with exception: %r - {suffix}", (exc,)


def outcome_word(state_type: StateType, state_name: str) -> StateName:
    """The outcome record's state for an attempt that ended in a state of this type and name:
    Completed, TimedOut (a FAILED state so named), Failed, or else Crashed - Crashed, and
    anything a task may hand back that is neither (Cancelled), is not a clean run."""
    if state_type is StateType.COMPLETED:
        return StateName.COMPLETED
    if state_type is StateType.FAILED:
        return StateName.TIMED_OUT if state_name == "TimedOut" else StateName.FAILED
    return StateName.CRASHED
