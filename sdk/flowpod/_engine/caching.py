"""The cache of task results: its key, the lock -> lookup -> commit around the attempts.

Only runs that persist results are cached. The key is computed where the task is called (a
cache_key_fn is arbitrary Python), so the Kubernetes task runner records it in the TaskRun too.
An input the cache policy cannot hash makes the run uncached (one ERROR line), not failed.
``AcquireLock`` takes the store's per-key lock: directly in a sync run, on a dedicated thread in an
async one (the lock blocks, and is thread-affine).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowpod._engine.attempts import tlog
from flowpod._engine.effects import Effect
from flowpod.context import FlowRunContext, TaskRunContext, _flow_run_var
from flowpod.exceptions import SerializationError, UnhashableInputError
from flowpod.states import Cached, State, exception_to_failed_state

if TYPE_CHECKING:
    from flowpod._storage import CacheStore
    from flowpod.context.runs import TaskRun
    from flowpod.context.views import FlowLike, TaskLike

__all__ = [
    "AcquireLock",
    "cache_plan",
    "cache_store",
    "commit",
    "compute_cache_key",
    "lookup",
    "serializer_of",
]

_WARNING = logging.WARNING
_ERROR = logging.ERROR


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
    A cache policy that cannot hash an input (UnhashableInputError) logs one ERROR line in the
    task run's logger and gives None: the run goes ahead uncached.
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
        try:
            key = task.cache_policy.compute_key(task_ctx, params, flow_params)
        except UnhashableInputError as exc:
            # An input the policy cannot hash (a lock, a socket) is no reason to fail the run:
            # it runs uncached, and says so once. A cache_key_fn is the user's own code, so its
            # errors still fail the run.
            tlog(task_run, _ERROR, "%s This run is not cached (no cache read, no cache write).",
                 exc)
            return None
    if key is not None and not isinstance(key, str):
        raise TypeError(
            f"The cache key of task {task.name!r} must be a str or None; got "
            f"{type(key).__name__} {key!r}."
        )
    return key


def cache_plan(
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
    return cache_store(task, flow), key


def cache_store(task: TaskLike, flow: FlowLike | None = None) -> CacheStore:
    """Where this task's cache records live: its result_storage, else the flow's, else the
    default store under the flowpod home."""
    if task.result_storage is None:
        if flow is not None and flow.result_storage is not None:
            return _store_for(flow)
        from flowpod._storage import default_cache_store

        return default_cache_store()
    return _store_for(task)


def _store_for(owner: Any) -> CacheStore:
    """The CacheStore over ``owner.result_storage`` (a folder path or a ResultStore), memoised
    in the owner (which drops it when pickled: it holds locks and file descriptors)."""
    store: CacheStore | None = owner.__dict__.get("_store")
    if store is None:
        from flowpod._storage import CacheStore, LocalResultStore

        backend = owner.result_storage
        if isinstance(backend, str | Path):
            backend = LocalResultStore(Path(backend))
        store = owner._store = CacheStore(backend)
    return store


def lookup(task_run: TaskRun, store: CacheStore, key: str) -> State[Any] | None:
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


def serializer_of(task: TaskLike) -> str:
    if task.result_serializer is not None:
        return task.result_serializer
    flow_ctx = _flow_run_var.get()
    if flow_ctx is not None and flow_ctx.flow.result_serializer is not None:
        return str(flow_ctx.flow.result_serializer)
    return "pickle"


def commit(task: TaskLike, store: CacheStore, key: str, state: State[Any]) -> State[Any]:
    try:
        store.commit(
            key,
            state.data,
            task_key=task.task_key,
            expiration=task.cache_expiration,
            serializer=serializer_of(task),
        )
    except SerializationError as exc:
        return exception_to_failed_state(exc, "Task run could not persist its result:")
    state.state_details.cache_key = key
    return state


class AcquireLock(Effect):
    """Take a store's lock (a context manager); the result is the callable that releases it.

    Sync: entered in this thread. Async: held by a ``_LockHolder`` thread, so that two runs of one
    key on the same loop do not deadlock it; its release blocks too, so the steps run it as a
    ``Blocking`` effect.
    """

    __slots__ = ("lock",)

    def __init__(self, lock: Any) -> None:
        self.lock = lock

    def run_sync(self) -> Callable[[], Any]:
        self.lock.__enter__()
        return functools.partial(self.lock.__exit__, None, None, None)

    async def run_async(self) -> Callable[[], Any]:
        import asyncio

        holder = _LockHolder(self.lock)
        await asyncio.to_thread(holder.acquire)
        return holder.release


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
