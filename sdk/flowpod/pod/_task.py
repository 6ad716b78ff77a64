"""One attempt of a TaskRun inside its pod: payload in, result/cache record and outcome out.

``run_task`` is what ``python -m flowpod.pod task <ns>/<name> --attempt N`` does after choosing a
store: read the payload, rebuild the task-run record (id, name, tags, run count = N) and the flow
run's context (so ``flowpod.runtime`` and ``get_run_logger`` behave as in the local engine), run
one attempt with ``flowpod._engine.attempts``, ask ``retry_condition_fn`` about a failure, persist
the return value (a result object, or the cache record when the payload carries a cache key), and
write the outcome the operator reads. Retries, their delays and the pod's deadline belong to the
operator; the task's own timeout is still applied here so that an overrun that leaves the process
alive is reported as TimedOut with a proper message.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from flowpod._contract.lifecycle import Schedule, failure_log, outcome_word
from flowpod._contract.records import Outcome
from flowpod._contract.retrying import decide_retry
from flowpod._engine.attempts import (
    FAILED_MESSAGE,
    exc_info_of,
    run_attempt_async,
    run_attempt_sync,
    run_hooks_sync,
    tlog,
)
from flowpod._engine.retries import retry_condition_allows
from flowpod._kube.payloads import FlowRunInfo, TaskPayload, read_payload
from flowpod._storage import (
    CacheStore,
    S3StoreError,
    write_exception,
    write_outcome,
    write_result,
)
from flowpod.context import FlowRunContext, _flow_run_var
from flowpod.context.runs import FlowRun, TaskRun
from flowpod.exceptions import SerializationError
from flowpod.flows import Flow
from flowpod.states import Pending, State, StateType, exception_to_failed_state, get_state_exception
from flowpod.task_runners import ThreadPoolTaskRunner

if TYPE_CHECKING:
    from flowpod._storage import ResultStore
    from flowpod.context import FlowRunContext
    from flowpod.tasks import Task

__all__ = ["outcome_state_name", "run_task"]

_INFO = logging.INFO
_ERROR = logging.ERROR


def outcome_state_name(state: State[Any]) -> str:
    """The outcome's state name for an attempt's final-or-failed state."""
    return outcome_word(state.type, state.name).value


def _task_run_record(payload: TaskPayload, attempt: int) -> TaskRun:
    task = payload.task
    flow_run_id = uuid.UUID(payload.flow_run.id) if payload.flow_run else None
    parent = uuid.UUID(payload.parent_task_run_id) if payload.parent_task_run_id else None
    run = TaskRun(payload.run_name, task.name, task.task_key, payload.parameters,
                  list(payload.tags), flow_run_id, parent)
    run.id = uuid.UUID(payload.task_run_id)
    run.set_state(Pending())
    # The earlier attempts ran in other pods: count them, so run_count (runtime.task_run,
    # retry_condition_fn) is this attempt's number once the attempt's Running state is added.
    run.run_count = attempt - 1
    run.cache_key = payload.cache_key
    return run


def _flow_context(info: FlowRunInfo, log_prints: bool) -> FlowRunContext | None:
    """A flow-run context standing in for the submitting side's, for runtime.flow_run and
    for tasks the task itself calls or submits (those run here, in this pod)."""
    def placeholder() -> None:
        """Stands in for the flow, which runs elsewhere."""
    try:
        flow: Flow[[], None] = Flow(placeholder, name=info.flow_name,
                                    persist_result=info.persist_result,
                                    result_serializer=info.result_serializer)
    except (TypeError, ValueError):
        return None
    run = FlowRun(info.name, info.flow_name, dict(info.parameters), list(info.tags))
    run.id = uuid.UUID(info.id)
    run.run_count = 1
    return FlowRunContext(flow, run, ThreadPoolTaskRunner(), log_prints, info.persist_result)


def _run_attempt(payload: TaskPayload, task_run: TaskRun, attempt: int) -> State[Any]:
    task = payload.task
    retry = attempt > 1
    if task.isasync:
        import asyncio

        return asyncio.run(run_attempt_async(task, task_run, payload.parameters,
                                             log_prints=payload.log_prints, retry=retry))
    return run_attempt_sync(task, task_run, payload.parameters, log_prints=payload.log_prints,
                            retry=retry)


def _retry_verdict(task: Task[Any, Any], task_run: TaskRun, state: State[Any],
                   retries: int) -> bool:
    """retry_condition_fn's answer, with the local engine's rules (the engine's own function)."""
    return retry_condition_allows(task, task_run, state, retries)


def _persist(payload: TaskPayload, store: ResultStore, namespace: str, name: str, attempt: int,
             state: State[Any]) -> tuple[State[Any], str | None]:
    """Store a Completed attempt's value; a value that does not serialise fails the attempt."""
    try:
        if payload.cache_key is not None:
            expiration = payload.cache_expiration_seconds
            record = CacheStore(store).commit(
                payload.cache_key,
                state.data,
                task_key=payload.task.task_key,
                expiration=None if expiration is None else timedelta(seconds=expiration),
                serializer=payload.result_serializer,
            )
            state.state_details.cache_key = payload.cache_key
            return state, record.result_key
        key = write_result(store, namespace, name, attempt, state.data, payload.result_serializer)
        return state, key
    except SerializationError as exc:
        return exception_to_failed_state(exc, "Task run could not persist its result:"), None


def _log_failure(task_run: TaskRun, state: State[Any], retries: int, allows: bool) -> bool:
    """Log why the attempt failed and what follows; True when a retry may follow."""
    # The operator chooses the delay; here only whether a retry may follow matters.
    decision = decide_retry(task_run.run_count, retries, (), None, condition_allows=allows)
    level, message, args = failure_log(
        get_state_exception(state), decision, retries, allows, Schedule.OPERATOR_PENDING
    )
    tlog(task_run, level, message, *args,
         exc_info=None if decision.retry else exc_info_of(state.data))
    return decision.retry


def _finish(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> None:
    """The final state of the whole run (no retry follows): hooks, then 'Finished in state'."""
    task_run.set_state(state)
    if state.type is StateType.COMPLETED:
        if task.on_completion:
            run_hooks_sync(task.on_completion, task, task_run, state)
    elif state.type in (StateType.FAILED, StateType.CRASHED):
        if task.on_failure:
            run_hooks_sync(task.on_failure, task, task_run, state)
    level = _INFO if state.type is StateType.COMPLETED else _ERROR
    tlog(task_run, level, "Finished in state %s", state)


def run_task(store: ResultStore, namespace: str, name: str, attempt: int) -> Outcome:
    """Run attempt ``attempt`` of TaskRun ``namespace/name`` and write its outcome."""
    try:
        payload = read_payload(store, namespace, name)
    except S3StoreError:
        # The store is down, not the payload broken: no outcome (it could not be written
        # either), so the operator counts the attempt as an infrastructure failure and retries.
        raise
    except Exception as exc:  # noqa: BLE001 - a payload that will not load fails every attempt
        logging.getLogger("flowpod.pod").error(
            "Cannot run task run %s/%s: %s", namespace, name, exc)
        outcome = Outcome(attempt=attempt, state="Failed",
                          message=f"{FAILED_MESSAGE} {type(exc).__name__}: {exc}",
                          exception=repr(exc), retry_allowed=False)
        write_outcome(store, namespace, name, outcome)
        return outcome
    return _run_payload(store, namespace, name, attempt, payload)


def _run_payload(store: ResultStore, namespace: str, name: str, attempt: int,
                 payload: TaskPayload) -> Outcome:
    task = payload.task
    task_run = _task_run_record(payload, attempt)
    flow_ctx = _flow_context(payload.flow_run, payload.log_prints) if payload.flow_run else None
    token = _flow_run_var.set(flow_ctx)
    try:
        state = _run_attempt(payload, task_run, attempt)
        result_ref: str | None = None
        retry_allowed = True
        if state.type is StateType.COMPLETED:
            state, result_ref = _persist(payload, store, namespace, name, attempt, state)
            if state.type is not StateType.COMPLETED:
                retry_allowed = False  # the same value fails to serialise again
        if state.type is StateType.COMPLETED:
            _finish(task, task_run, state)
        elif state.type is StateType.FAILED and retry_allowed:
            retry_allowed = _retry_verdict(task, task_run, state, payload.retries)
            if not _log_failure(task_run, state, payload.retries, retry_allowed):
                _finish(task, task_run, state)
        else:
            _finish(task, task_run, state)
    finally:
        _flow_run_var.reset(token)
    return _write_outcome(store, namespace, name, attempt, state, result_ref, retry_allowed,
                          payload.result_serializer)


def _write_outcome(store: ResultStore, namespace: str, name: str, attempt: int,
                   state: State[Any], result_ref: str | None, retry_allowed: bool,
                   serializer: str) -> Outcome:
    exception_text = exception_ref = None
    if state.type is not StateType.COMPLETED:
        exc = get_state_exception(state)
        exception_text = repr(exc)
        if isinstance(state.data, BaseException):
            exception_ref = write_exception(store, namespace, name, attempt, state.data)
    outcome = Outcome(
        attempt=attempt,
        state=outcome_state_name(state),
        message=state.message,
        exception=exception_text,
        retry_allowed=retry_allowed,
        result_ref=result_ref,
        exception_ref=exception_ref,
        serializer=serializer if result_ref is not None else None,
    )
    write_outcome(store, namespace, name, outcome)
    return outcome
