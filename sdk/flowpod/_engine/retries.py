"""After a failed attempt: ask ``retry_condition_fn``, decide, log, and loop over the attempts.

The verdict and the words are the run contract's (``flowpod._contract.retrying.decide_retry``,
``flowpod._contract.lifecycle.failure_log``), shared with the operator, so a task run reads the same
whether its attempts ran here or as pods. ``retry_condition_allows`` is the one place that asks a
task's ``retry_condition_fn``: the local engine (through ``condition_steps``) and the task pods
(``flowpod.pod._task``) both use it.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from flowpod._contract.lifecycle import CONDITION_ERROR_LOG, Schedule, failure_log
from flowpod._engine.attempts import attempt_steps, exc_info_of, tlog
from flowpod._engine.effects import Sleep, Steps, Wait, run_sync
from flowpod._engine.transitions import state_after_failure
from flowpod.states import State, StateType, get_state_exception

if TYPE_CHECKING:
    from flowpod._contract.retrying import RetryDecision
    from flowpod.context.runs import TaskRun
    from flowpod.context.views import TaskLike

__all__ = [
    "attempts_steps",
    "condition_steps",
    "decide",
    "delays_of",
    "retries_of",
    "retry_condition_allows",
]


def retries_of(task: TaskLike) -> int:
    """The task's retries, else the ``task_default_retries`` setting."""
    if task.retries is not None:
        return task.retries
    from flowpod._common.settings import get_settings

    return get_settings().task_default_retries


def delays_of(task: TaskLike, retries: int) -> list[float]:
    """The delay before each retry: the task's retry_delay_seconds, else the setting's."""
    from flowpod._contract.retrying import resolve_delays

    spec = task.retry_delay_seconds
    if spec is None:
        from flowpod._common.settings import get_settings

        spec = get_settings().task_default_retry_delay_seconds
    return resolve_delays(spec, retries)


def condition_steps(
    task: TaskLike, task_run: TaskRun, state: State[Any], retries: int
) -> Steps[bool]:
    """Whether ``retry_condition_fn`` lets the failed run retry. It is only asked while a retry
    remains; it may return an awaitable; if it raises, the answer is no (and that is logged)."""
    condition = task.retry_condition_fn
    if condition is None or task_run.run_count > retries:
        return True
    try:
        verdict = yield Wait(condition(task, task_run, state))
        return bool(verdict)
    except Exception:
        tlog(task_run, logging.ERROR, CONDITION_ERROR_LOG, task.name, exc_info=True)
        return False


def retry_condition_allows(
    task: TaskLike, task_run: TaskRun, state: State[Any], retries: int
) -> bool:
    """``condition_steps`` from synchronous code (an async condition runs to completion)."""
    return run_sync(condition_steps(task, task_run, state, retries))


def decide(
    task: TaskLike, task_run: TaskRun, state: State[Any], retries: int, allows: bool
) -> RetryDecision:
    """Decide whether a failed attempt is retried; log why; record AwaitingRetry if it is."""
    from flowpod._contract.retrying import decide_retry

    delays = delays_of(task, retries) if retries else []
    decision = decide_retry(
        task_run.run_count, retries, delays, task.retry_jitter_factor, condition_allows=allows
    )
    level, message, args = failure_log(
        get_state_exception(state), decision, retries, allows, Schedule.LOCAL
    )
    tlog(task_run, level, message, *args,
         exc_info=None if decision.retry else exc_info_of(state.data))
    if decision.retry:
        task_run.set_state(state_after_failure(state, decision, time.time()))
    return decision


def attempts_steps(
    task: TaskLike, task_run: TaskRun, params: dict[str, Any], log_prints: bool
) -> Steps[State[Any]]:
    """Attempt after attempt until one does not fail or no retry is decided; the last state."""
    retries = -1  # read from the task (or the settings) only once an attempt failed
    retry = False
    while True:
        state = yield from attempt_steps(task, task_run, params, log_prints, retry)
        if state.type is not StateType.FAILED:
            return state
        if retries < 0:
            retries = retries_of(task)
        allows = yield from condition_steps(task, task_run, state, retries)
        decision = decide(task, task_run, state, retries, allows)
        if not decision.retry:
            return state
        yield Sleep(decision.delay_seconds)
        retry = True
