"""The local task-run lifecycle: everything between calling a task and its final state.

One attempt is ``flowpod._engine.attempts`` (shared with the task pods of the Kubernetes side); this
module drives the attempts of a run on this machine:

- resolving upstream futures (``flowpod._engine.inputs``; NotReady when one did not complete),
- the run name (``<task>-<n>`` in a flow, or ``task_run_name`` resolved once),
- the cache: lock -> lookup -> attempts -> commit through ``flowpod._storage.stores.CacheStore``,
- retries: ``flowpod._contract.retrying.decide_retry`` (the operator calls it too) after each failed
  attempt, AwaitingRetry / Retrying states, the retry log lines,
- the final state: history, on_completion / on_failure hooks, "Finished in state ...".

Entry points: ``call_sync`` / ``call_async`` for direct calls, ``prepare_submission`` /
``execute_submission`` for task runners. Directly called generator tasks are driven by
``flowpod._engine.generators``.
"""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any

from flowpod._contract.lifecycle import CONDITION_ERROR_LOG, Schedule, failure_log
from flowpod._engine.attempts import (
    FAILED_MESSAGE,
    exc_info_of,
    run_attempt_async,
    run_attempt_sync,
    run_hooks_async,
    run_hooks_sync,
    tlog,
)
from flowpod._engine.inputs import needs_waiting, resolve_inputs
from flowpod._engine.runs import TaskRun
from flowpod._engine.transitions import state_after_failure
from flowpod.context import FlowRunContext, TaskRunContext, _flow_run_var, _tags_var, _task_run_var
from flowpod.exceptions import SerializationError, UpstreamTaskError
from flowpod.logging import FLOW_LOGGER, TASK_LOGGER, setup_logging
from flowpod.states import (
    Cached,
    NotReady,
    Pending,
    State,
    StateType,
    exception_to_failed_state,
    get_state_exception,
)

if TYPE_CHECKING:
    from flowpod._contract.retrying import RetryDecision
    from flowpod._engine.protocols import TaskLike
    from flowpod._storage.stores import CacheStore

__all__ = [
    "Submission",
    "call_async",
    "call_sync",
    "compute_cache_key",
    "execute_submission",
    "prepare_submission",
    "run_attempt_async",
    "run_attempt_sync",
]

_INFO = logging.INFO
_ERROR = logging.ERROR
_WARNING = logging.WARNING


# -- logging ----------------------------------------------------------------------------------


def _flog(flow_ctx: FlowRunContext, level: int, msg: str, *args: Any) -> None:
    if FLOW_LOGGER.isEnabledFor(level):
        run = flow_ctx.flow_run
        FLOW_LOGGER.log(
            level,
            msg,
            *args,
            extra={
                "flowpod_label": f"Flow run {run.name!r}",
                "flow_run_id": str(run.id),
                "flow_run_name": run.name,
            },
        )


# -- creating runs ------------------------------------------------------------------------------


def new_task_run(
    task: TaskLike,
    parameters: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
) -> TaskRun:
    name = flow_ctx.next_task_run_name(task.name) if flow_ctx is not None else task.name
    context_tags = _tags_var.get()
    tags = sorted(task.tags | context_tags) if context_tags else sorted(task.tags)
    task_run = TaskRun(
        name,
        task.name,
        task.task_key,
        parameters,
        tags,
        flow_ctx.flow_run.id if flow_ctx is not None else None,
        parent.task_run.id if parent is not None else None,
    )
    task_run.set_state(Pending())
    return task_run


def apply_run_name(task: TaskLike, task_run: TaskRun, params: dict[str, Any]) -> None:
    """Resolve ``task_run_name`` once per run (retries keep the name)."""
    template = task.task_run_name
    if template is None:
        return
    if callable(template):
        token = _task_run_var.set(
            TaskRunContext(task, task_run, params, False, task.persist_result)
        )
        try:
            sig = inspect.signature(template)
            if "parameters" in sig.parameters:
                name = template(parameters=params)
            else:
                name = template()
        finally:
            _task_run_var.reset(token)
    else:
        try:
            name = template.format(**params)
        except (KeyError, IndexError) as exc:
            raise ValueError(
                f"task_run_name {template!r} of task {task.name!r} refers to {exc}, which is not "
                f"a parameter of the task (parameters: {', '.join(params) or 'none'})."
            ) from None
    if not isinstance(name, str):
        raise TypeError(
            f"task_run_name of task {task.name!r} must produce a str; got "
            f"{type(name).__name__} {name!r}."
        )
    task_run.name = name


def effective_log_prints(
    task: TaskLike, flow_ctx: FlowRunContext | None, parent: TaskRunContext | None
) -> bool:
    if task.log_prints is not None:
        return task.log_prints
    if parent is not None:
        return parent.log_prints
    return flow_ctx.log_prints if flow_ctx is not None else False


# -- retries ------------------------------------------------------------------------------------


def _retries(task: TaskLike) -> int:
    if task.retries is not None:
        return task.retries
    from flowpod._common.settings import get_settings

    return get_settings().task_default_retries


def _delays(task: TaskLike, retries: int) -> list[float]:
    from flowpod._contract.retrying import resolve_delays

    spec = task.retry_delay_seconds
    if spec is None:
        from flowpod._common.settings import get_settings

        spec = get_settings().task_default_retry_delay_seconds
    return resolve_delays(spec, retries)


def _condition_failed(task_run: TaskRun, task: TaskLike) -> bool:
    tlog(task_run, _ERROR, CONDITION_ERROR_LOG, task.name, exc_info=True)
    return False


def _decide(
    task: TaskLike, task_run: TaskRun, state: State[Any], retries: int, allows: bool
) -> RetryDecision:
    """Decide whether a failed attempt is retried; log why; record AwaitingRetry if it is."""
    from flowpod._contract.retrying import decide_retry

    delays = _delays(task, retries) if retries else []
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


def _attempts_sync(task: TaskLike, task_run: TaskRun, params: dict[str, Any],
                   log_prints: bool) -> State[Any]:
    retries = -1  # read from the task (or the settings) only once an attempt failed
    retry = False
    while True:
        state = run_attempt_sync(task, task_run, params, log_prints=log_prints, retry=retry)
        if state.type is not StateType.FAILED:
            return state
        if retries < 0:
            retries = _retries(task)
        allows = True
        if task.retry_condition_fn is not None and task_run.run_count <= retries:
            from flowpod._common.asyncutils import run_coro_sync

            try:
                verdict = task.retry_condition_fn(task, task_run, state)
                if inspect.iscoroutine(verdict):
                    verdict = run_coro_sync(verdict)
                allows = bool(verdict)
            except Exception:
                allows = _condition_failed(task_run, task)
        decision = _decide(task, task_run, state, retries, allows)
        if not decision.retry:
            return state
        if decision.delay_seconds > 0:
            time.sleep(decision.delay_seconds)
        retry = True


async def _attempts_async(task: TaskLike, task_run: TaskRun, params: dict[str, Any],
                          log_prints: bool) -> State[Any]:
    import asyncio

    retries = -1  # read from the task (or the settings) only once an attempt failed
    retry = False
    while True:
        state = await run_attempt_async(task, task_run, params, log_prints=log_prints, retry=retry)
        if state.type is not StateType.FAILED:
            return state
        if retries < 0:
            retries = _retries(task)
        allows = True
        if task.retry_condition_fn is not None and task_run.run_count <= retries:
            try:
                verdict = task.retry_condition_fn(task, task_run, state)
                if inspect.isawaitable(verdict):
                    verdict = await verdict
                allows = bool(verdict)
            except Exception:
                allows = _condition_failed(task_run, task)
        decision = _decide(task, task_run, state, retries, allows)
        if not decision.retry:
            return state
        await asyncio.sleep(decision.delay_seconds)
        retry = True


# -- caching ------------------------------------------------------------------------------------


def compute_cache_key(
    task: TaskLike,
    task_run: TaskRun,
    params: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    log_prints: bool = False,
) -> str | None:
    """The cache key of this run, or None when it is not cached.

    Only runs that persist results are cached (a cache policy or cache_key_fn implies it; the
    flow's persist_result is inherited). The key comes from cache_key_fn(context, parameters), else
    the result_storage_key template, else the cache policy. Computed where the task is called (a
    cache_key_fn is arbitrary Python), so the Kubernetes task runner records it in the TaskRun.
    """
    persist = task.persist_result
    if persist is None and flow_ctx is not None:
        persist = flow_ctx.persist_result
    if not persist or task.cache_policy is None:
        return None
    from flowpod.cache_policies import NO_CACHE

    if (
        task.cache_key_fn is None
        and task.result_storage_key is None
        and task.cache_policy is NO_CACHE
    ):
        return None
    task_ctx = TaskRunContext(task, task_run, params, log_prints, persist)
    if task.cache_key_fn is not None:
        key = task.cache_key_fn(task_ctx, params)
    elif task.result_storage_key is not None:
        key = task.result_storage_key.format(**params)
    else:
        flow_params = flow_ctx.parameters if flow_ctx is not None else {}
        key = task.cache_policy.compute_key(task_ctx, params, flow_params)
    if key is not None and not isinstance(key, str):
        raise TypeError(
            f"The cache key of task {task.name!r} must be a str or None; got "
            f"{type(key).__name__} {key!r}."
        )
    return key


def _cache_plan(
    task: TaskLike,
    task_run: TaskRun,
    params: dict[str, Any],
    flow_ctx: FlowRunContext | None,
    log_prints: bool,
) -> tuple[CacheStore, str] | None:
    """The store and cache key of this run, or None when the run is not cached."""
    key = compute_cache_key(task, task_run, params, flow_ctx, log_prints)
    if key is None:
        return None
    flow = flow_ctx.flow if flow_ctx is not None else None
    return task._cache_store(flow), key


def _lookup(task_run: TaskRun, store: CacheStore, key: str) -> State[Any] | None:
    try:
        hit, value = store.lookup(key)
    except Exception as exc:  # noqa: BLE001 - an unreadable record is a miss, not a failure
        tlog(task_run, _WARNING, "Ignoring unreadable cache record %r: %r", key, exc)
        return None
    if not hit:
        return None
    state = Cached(data=value)
    state.state_details.cache_key = key
    return state


def _serializer(task: TaskLike) -> str:
    if task.result_serializer is not None:
        return task.result_serializer
    flow_ctx = _flow_run_var.get()
    if flow_ctx is not None and flow_ctx.flow.result_serializer is not None:
        return str(flow_ctx.flow.result_serializer)
    return "pickle"


def _commit(task: TaskLike, store: CacheStore, key: str, state: State[Any]) -> State[Any]:
    try:
        store.commit(
            key,
            state.data,
            task_key=task.task_key,
            expiration=task.cache_expiration,
            serializer=_serializer(task),
        )
    except SerializationError as exc:
        return exception_to_failed_state(exc, "Task run could not persist its result:")
    state.state_details.cache_key = key
    return state


# -- finishing ----------------------------------------------------------------------------------


def finalize_sync(task: TaskLike, task_run: TaskRun, state: State[Any]) -> State[Any]:
    task_run.set_state(state)
    if state.type is StateType.COMPLETED:
        if task.on_completion:
            run_hooks_sync(task.on_completion, task, task_run, state)
    elif state.type is StateType.FAILED or state.type is StateType.CRASHED:
        _note_failure()
        if task.on_failure:
            run_hooks_sync(task.on_failure, task, task_run, state)
    _log_finished(task_run, state)
    return state


async def finalize_async(task: TaskLike, task_run: TaskRun, state: State[Any]) -> State[Any]:
    task_run.set_state(state)
    if state.type is StateType.COMPLETED:
        if task.on_completion:
            await run_hooks_async(task.on_completion, task, task_run, state)
    elif state.type is StateType.FAILED or state.type is StateType.CRASHED:
        _note_failure()
        if task.on_failure:
            await run_hooks_async(task.on_failure, task, task_run, state)
    _log_finished(task_run, state)
    return state


def _note_failure() -> None:
    flow_ctx = _flow_run_var.get()
    if flow_ctx is not None:
        flow_ctx.task_run_failed = True


def _log_finished(task_run: TaskRun, state: State[Any]) -> None:
    level = _INFO if state.type is StateType.COMPLETED else _ERROR
    if TASK_LOGGER.isEnabledFor(level):
        tlog(task_run, level, "Finished in state %s", state)


def _outcome(state: State[Any], return_state: bool) -> Any:
    data = state.data
    if (
        state.type is StateType.CRASHED
        and isinstance(data, BaseException)
        and not isinstance(data, Exception)
    ):
        raise data  # KeyboardInterrupt, cancellation, an enclosing deadline: keep unwinding
    if return_state:
        return state
    if state.type is StateType.COMPLETED:
        return data
    return state.result()


def announce_run(flow_ctx: FlowRunContext | None, task: TaskLike, task_run: TaskRun,
              submitted: bool) -> None:
    if flow_ctx is None or not FLOW_LOGGER.isEnabledFor(_INFO):
        return
    _flog(flow_ctx, _INFO, "Created task run %r for task %r", task_run.name, task.name)
    if submitted:
        _flog(flow_ctx, _INFO, "Submitted task run %r for execution.", task_run.name)
    else:
        _flog(flow_ctx, _INFO, "Executing %r immediately...", task_run.name)


# -- drivers ------------------------------------------------------------------------------------


def _drive_sync(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
    announce: bool,
    name_run: bool = True,
) -> State[Any]:
    try:
        params = resolve_inputs(parameters, wait_for)
    except UpstreamTaskError as exc:
        if announce:
            announce_run(flow_ctx, task, task_run, False)
        return finalize_sync(task, task_run, NotReady(message=str(exc), data=exc))
    task_run.parameters = params
    log_prints = effective_log_prints(task, flow_ctx, parent)
    try:
        if task.task_run_name is not None and name_run:
            apply_run_name(task, task_run, params)
        if announce:
            announce_run(flow_ctx, task, task_run, False)
        plan = _cache_plan(task, task_run, params, flow_ctx, log_prints)
    except Exception as exc:
        return finalize_sync(task, task_run, exception_to_failed_state(exc, FAILED_MESSAGE))
    if plan is None:
        return finalize_sync(task, task_run, _attempts_sync(task, task_run, params, log_prints))
    store, key = plan
    task_run.cache_key = key
    with store.lock(key):
        state = None if task.refresh_cache else _lookup(task_run, store, key)
        if state is None:
            state = _attempts_sync(task, task_run, params, log_prints)
            if state.type is StateType.COMPLETED:
                state = _commit(task, store, key, state)
    return finalize_sync(task, task_run, state)


async def _drive_async(
    task: TaskLike,
    task_run: TaskRun,
    parameters: dict[str, Any],
    wait_for: Any,
    flow_ctx: FlowRunContext | None,
    parent: TaskRunContext | None,
    announce: bool,
    name_run: bool = True,
) -> State[Any]:
    import asyncio

    try:
        if wait_for or any(needs_waiting(v) for v in parameters.values()):
            # Waiting on thread-pool futures blocks: do it off the event loop.
            params = await asyncio.to_thread(resolve_inputs, parameters, wait_for)
        else:
            params = resolve_inputs(parameters, None)
    except UpstreamTaskError as exc:
        if announce:
            announce_run(flow_ctx, task, task_run, False)
        return await finalize_async(task, task_run, NotReady(message=str(exc), data=exc))
    task_run.parameters = params
    log_prints = effective_log_prints(task, flow_ctx, parent)
    try:
        if task.task_run_name is not None and name_run:
            apply_run_name(task, task_run, params)
        if announce:
            announce_run(flow_ctx, task, task_run, False)
        plan = _cache_plan(task, task_run, params, flow_ctx, log_prints)
    except Exception as exc:
        failed = exception_to_failed_state(exc, FAILED_MESSAGE)
        return await finalize_async(task, task_run, failed)
    if plan is None:
        state = await _attempts_async(task, task_run, params, log_prints)
        return await finalize_async(task, task_run, state)
    store, key = plan
    task_run.cache_key = key
    # The store's lock blocks (threads and other processes): take it off the event loop, so two
    # runs of one key on the same loop do not deadlock it.
    holder = _LockHolder(store.lock(key))
    await asyncio.to_thread(holder.acquire)
    try:
        cached = None if task.refresh_cache else _lookup(task_run, store, key)
        if cached is not None:
            state = cached
        else:
            state = await _attempts_async(task, task_run, params, log_prints)
            if state.type is StateType.COMPLETED:
                state = _commit(task, store, key, state)
    finally:
        await asyncio.to_thread(holder.release)
    return await finalize_async(task, task_run, state)


class _LockHolder:
    """Holds a blocking lock on a dedicated thread, so that a coroutine can own it.

    The store's lock is thread-affine (acquire and release on one thread), while the coroutine
    that needs it may resume on any thread's ``to_thread`` worker.
    """

    def __init__(self, lock: Any) -> None:
        import threading

        self._lock = lock
        self._acquired = threading.Event()
        self._release = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="flowpod-cache-lock", daemon=True)

    def _hold(self) -> None:
        try:
            with self._lock:
                self._acquired.set()
                self._release.wait()
        except BaseException as exc:  # noqa: BLE001 - handed to the coroutine
            self._error = exc
            self._acquired.set()

    def acquire(self) -> None:
        self._thread.start()
        self._acquired.wait()
        if self._error is not None:
            raise self._error

    def release(self) -> None:
        self._release.set()
        self._thread.join()


# -- entry points from Task ---------------------------------------------------------------------


def call_sync(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> Any:
    """A direct call of a sync task: run it inline, return its result (or state)."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    if flow_ctx is None and parent is None:
        setup_logging()
    task_run = new_task_run(task, parameters, flow_ctx, parent)
    state = _drive_sync(task, task_run, parameters, wait_for, flow_ctx, parent, True)
    return _outcome(state, return_state)


async def call_async(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any, return_state: bool
) -> Any:
    """A direct call of an async task (the coroutine the call returns)."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    if flow_ctx is None and parent is None:
        setup_logging()
    task_run = new_task_run(task, parameters, flow_ctx, parent)
    state = await _drive_async(task, task_run, parameters, wait_for, flow_ctx, parent, True)
    return _outcome(state, return_state)


class Submission:
    """A task run created by a task runner, ready to execute anywhere (a thread, a pod)."""

    __slots__ = ("task", "task_run", "parameters", "wait_for", "flow_ctx", "parent", "named")

    def __init__(self, task: TaskLike, task_run: TaskRun, parameters: dict[str, Any],
                 wait_for: Any, flow_ctx: FlowRunContext | None,
                 parent: TaskRunContext | None) -> None:
        # Any, not TaskLike: a task runner reads it back as the ``flowpod.tasks.Task`` it
        # submitted (the Kubernetes runner pickles it), a type the engine cannot name.
        self.task: Any = task
        self.task_run = task_run
        self.parameters = parameters
        self.wait_for = wait_for
        self.flow_ctx = flow_ctx
        self.parent = parent
        self.named = False  # True once task_run_name has been applied


def prepare_submission(
    task: TaskLike, parameters: dict[str, Any], wait_for: Any
) -> Submission:
    """Create the task run of a ``.submit()`` (Pending, named, announced)."""
    flow_ctx = _flow_run_var.get()
    parent = _task_run_var.get()
    task_run = new_task_run(task, parameters, flow_ctx, parent)
    sub = Submission(task, task_run, parameters, wait_for, flow_ctx, parent)
    if task.task_run_name is not None and not any(needs_waiting(v) for v in parameters.values()):
        try:
            apply_run_name(task, task_run, parameters)
            sub.named = True
        except Exception:  # noqa: BLE001 - retried, and reported, when the run executes
            pass
    announce_run(flow_ctx, task, task_run, True)
    return sub


def execute_submission(sub: Submission) -> State[Any]:
    """Drive a prepared run to its final state (in the caller's thread; async on a new loop)."""
    task = sub.task
    # A name template that needed upstream results is resolved once they are in.
    name_run = task.task_run_name is not None and not sub.named
    if task.isasync:
        import asyncio

        return asyncio.run(
            _drive_async(task, sub.task_run, sub.parameters, sub.wait_for, sub.flow_ctx,
                         sub.parent, False, name_run)
        )
    return _drive_sync(task, sub.task_run, sub.parameters, sub.wait_for, sub.flow_ctx,
                       sub.parent, False, name_run)
