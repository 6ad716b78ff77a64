"""``@task`` and the ``Task`` object: the decorator's arguments, their validation, and the calls.

Calling a task runs it inline (in a flow: named ``<task>-<n>``; outside one: named ``<task>``);
``.submit()`` hands it to the flow's task runner and returns a future; ``.map()`` submits one run
per element of its iterable arguments. Every argument is checked when the decorator runs, so a
mistake fails at import time with a message that says what is accepted. The run itself is the
engine's (``flowpod._engine.task_engine``).
"""

from __future__ import annotations

import copy
import datetime
import inspect
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

import flowpod._engine.generators as _task_generators
import flowpod._engine.task_engine as _task_engine
from flowpod._common.hashing import compute_task_key, task_input_hash
from flowpod._common.parameters import CallSpec
from flowpod._contract.retrying import (
    exponential_backoff,
    validate_retry_delay_seconds,
    validate_retry_jitter_factor,
)
from flowpod.cache_policies import DEFAULT, NO_CACHE, CachePolicy
from flowpod.context import FlowRunContext
from flowpod.exceptions import MappingLengthMismatch, MappingMissingIterable, MissingContextError
from flowpod.futures import FlowpodFuture, FlowpodFutureList
from flowpod.utilities.annotations import quote, unmapped

if TYPE_CHECKING:
    from flowpod._storage.stores import CacheStore

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]

P = ParamSpec("P")
R = TypeVar("R")


class _NotSet:
    def __repr__(self) -> str:
        return "NotSet"


NotSet: Any = _NotSet()

_SERIALIZERS = ("pickle", "json")


def _check_hooks(value: Any, name: str, kind: str = "task") -> list[Callable[..., Any]]:
    if value is None:
        return []
    if callable(value) or isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(
            f"Expected a list of hooks for {name!r}; got {type(value).__name__} instead. "
            f"Pass a list, e.g. @{kind}({name}=[my_hook])."
        )
    hooks = list(value)
    for hook in hooks:
        if not callable(hook):
            raise TypeError(f"{name} must contain callables; got {type(hook).__name__} {hook!r}.")
    return hooks


def _check_optional(value: Any, types: type | tuple[type, ...], name: str, what: str) -> None:
    if value is None:
        return
    allowed = types if isinstance(types, tuple) else (types,)
    # bool is an int subclass, but True is never meant as a number here.
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        raise TypeError(f"{name} must be {what} or None; got {type(value).__name__} {value!r}.")


def _check_tags(tags: Any) -> frozenset[str]:
    if tags is None:
        return frozenset()
    if isinstance(tags, str) or not isinstance(tags, Iterable):
        raise TypeError(f"tags must be a collection of strings, e.g. tags={{'etl'}}; got {tags!r}.")
    result = frozenset(tags)
    for tag in result:
        if not isinstance(tag, str):
            raise TypeError(f"tags must be strings; got {type(tag).__name__} {tag!r}.")
    return result


def _check_timeout(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"timeout_seconds must be a number of seconds or None; got {value!r}.")
    if value <= 0:
        raise ValueError(f"timeout_seconds must be > 0; got {value!r}.")


def _check_retries(value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"retries must be an int >= 0 or None; got {type(value).__name__} {value!r}."
        )
    if value < 0:
        raise ValueError(f"retries must be >= 0; got {value!r}.")


def _check_serializer(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str) or value not in _SERIALIZERS:
        raise ValueError(
            f"result_serializer must be one of {', '.join(map(repr, _SERIALIZERS))}; got {value!r}."
        )


def _check_storage(value: Any) -> None:
    if value is None or isinstance(value, str | Path):
        return
    from flowpod._storage.stores import ResultStore

    if not isinstance(value, ResultStore):
        raise TypeError(
            "result_storage must be a folder path or a flowpod ResultStore; "
            f"got {type(value).__name__} {value!r}."
        )


class Task(Generic[P, R]):
    """A function turned into a task: call it, ``.submit()`` it or ``.map()`` it."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        version: str | None = None,
        cache_policy: CachePolicy | Any = NotSet,
        cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
        cache_expiration: datetime.timedelta | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: Any = None,
        retry_jitter_factor: float | None = None,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: str | None = None,
        result_storage_key: str | None = None,
        cache_result_in_memory: bool = True,
        timeout_seconds: int | float | None = None,
        log_prints: bool | None = None,
        refresh_cache: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
        retry_condition_fn: Callable[..., Any] | None = None,
        viz_return_value: Any = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@task must decorate a function; got {type(fn).__name__} {fn!r}.")
        if isinstance(fn, classmethod | staticmethod):
            raise TypeError(
                "@task must be applied below @classmethod/@staticmethod: write @classmethod (or "
                "@staticmethod) on top, then @task, then the function."
            )
        if name is None:
            name = getattr(fn, "__name__", None) or type(fn).__name__
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str; got {name!r}.")
        _check_optional(description, str, "description", "a str")
        _check_optional(version, str, "version", "a str")
        if cache_policy is not NotSet and cache_policy is not None and not isinstance(
            cache_policy, CachePolicy
        ):
            raise TypeError(
                "cache_policy must be a CachePolicy (e.g. flowpod.cache_policies.INPUTS); "
                f"got {type(cache_policy).__name__} {cache_policy!r}."
            )
        if cache_key_fn is not None and not callable(cache_key_fn):
            raise TypeError(
                f"cache_key_fn must be callable(context, parameters); got {cache_key_fn!r}."
            )
        _check_optional(cache_expiration, datetime.timedelta, "cache_expiration", "a timedelta")
        if task_run_name is not None and not (
            isinstance(task_run_name, str) or callable(task_run_name)
        ):
            raise TypeError(
                "task_run_name must be a str template (e.g. 'fetch-{url}') or a callable; "
                f"got {type(task_run_name).__name__} {task_run_name!r}."
            )
        _check_retries(retries)
        validate_retry_delay_seconds(retry_delay_seconds)
        validate_retry_jitter_factor(retry_jitter_factor)
        if retry_condition_fn is not None and not callable(retry_condition_fn):
            raise TypeError(
                "retry_condition_fn must be callable(task, task_run, state) -> bool; "
                f"got {retry_condition_fn!r}."
            )
        _check_optional(persist_result, bool, "persist_result", "a bool")
        _check_storage(result_storage)
        _check_serializer(result_serializer)
        _check_optional(result_storage_key, str, "result_storage_key", "a str template")
        if not isinstance(cache_result_in_memory, bool):
            raise TypeError(
                f"cache_result_in_memory must be a bool; got {cache_result_in_memory!r}."
            )
        _check_timeout(timeout_seconds)
        _check_optional(log_prints, bool, "log_prints", "a bool")
        _check_optional(refresh_cache, bool, "refresh_cache", "a bool")

        self.fn = fn
        self.name = name
        self.description = description if description is not None else inspect.getdoc(fn)
        self.tags: set[str] = set(_check_tags(tags))
        self.version = version
        self.cache_key_fn = cache_key_fn
        self.cache_expiration = cache_expiration
        self.task_run_name = task_run_name
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.retry_jitter_factor = retry_jitter_factor
        self.retry_condition_fn = retry_condition_fn
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.result_storage_key = result_storage_key
        self.cache_result_in_memory = cache_result_in_memory
        self.timeout_seconds = timeout_seconds
        self.log_prints = log_prints
        self.refresh_cache = refresh_cache
        self.on_completion = _check_hooks(on_completion, "on_completion")
        self.on_failure = _check_hooks(on_failure, "on_failure")
        self.on_running = _check_hooks(on_running, "on_running")
        self.viz_return_value = viz_return_value

        # A task that asks for caching in any way persists its result, unless told not to.
        explicit_policy = cache_policy is not NotSet and cache_policy is not None
        if persist_result is None and (
            (explicit_policy and cache_policy is not NO_CACHE)
            or cache_key_fn is not None
            or result_storage_key is not None
            or result_storage is not None
            or result_serializer is not None
        ):
            persist_result = True
        if persist_result is False:
            cache_policy = NO_CACHE
        self.persist_result = persist_result
        self.cache_policy: CachePolicy = (
            DEFAULT if cache_policy is NotSet or cache_policy is None else cache_policy
        )
        self._given_cache_policy = cache_policy

        self.isasync = inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn)
        self.isgenerator = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        self._spec = CallSpec(fn, "Task")
        self.task_key = compute_task_key(self.name, fn, self.tags)
        self._bound: Any = None
        self._store: CacheStore | None = None
        self._options: dict[str, Any] = {
            "name": name, "description": description, "tags": tags, "version": version,
            "cache_policy": cache_policy, "cache_key_fn": cache_key_fn,
            "cache_expiration": cache_expiration, "task_run_name": task_run_name,
            "retries": retries, "retry_delay_seconds": retry_delay_seconds,
            "retry_jitter_factor": retry_jitter_factor, "persist_result": persist_result,
            "result_storage": result_storage, "result_serializer": result_serializer,
            "result_storage_key": result_storage_key,
            "cache_result_in_memory": cache_result_in_memory, "timeout_seconds": timeout_seconds,
            "log_prints": log_prints, "refresh_cache": refresh_cache,
            "on_completion": on_completion, "on_failure": on_failure, "on_running": on_running,
            "retry_condition_fn": retry_condition_fn, "viz_return_value": viz_return_value,
        }
        self._call: Callable[..., Any]
        if inspect.isasyncgenfunction(fn):
            self._call = _task_generators.call_async_generator
        elif inspect.isgeneratorfunction(fn):
            self._call = _task_generators.call_generator
        elif self.isasync:
            self._call = _task_engine.call_async
        else:
            self._call = _task_engine.call_sync
        try:
            self.__doc__ = fn.__doc__
            self.__name__ = fn.__name__
            self.__qualname__ = fn.__qualname__
            self.__module__ = fn.__module__
            self.__wrapped__ = fn
        except AttributeError:
            pass

    # -- options -----------------------------------------------------------------------------

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some decorator arguments changed (same names as ``@task``)."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(
                f"with_options() got unexpected argument(s) {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(self._options))}."
            )
        merged = dict(self._options)
        if "persist_result" not in options and self._options["persist_result"] is not None and (
            {"cache_policy", "cache_key_fn", "result_storage_key"} & set(options)
        ):
            merged["persist_result"] = None
        merged.update(options)
        new = Task(self.fn, **merged)
        new._bound = self._bound
        return new

    def _cache_store(self, flow: Any = None) -> CacheStore:
        """Where this task's cache records live: its result_storage, else the flow's, else the
        default store under the flowpod home."""
        if self.result_storage is None:
            if flow is not None and flow.result_storage is not None:
                return _store_for(flow)
            from flowpod._storage import default_cache_store

            return default_cache_store()
        return _store_for(self)

    def __getstate__(self) -> dict[str, Any]:
        # The memoised store holds locks and file descriptors: rebuild it where the task lands
        # (a pod unpickling the task's payload).
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    # -- calls ---------------------------------------------------------------------------------

    def __get__(self, instance: Any, owner: type | None = None) -> Task[P, R]:
        if instance is None:
            return self
        bound = copy.copy(self)
        bound._bound = instance
        return bound

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        if self._bound is not None:
            args = (self._bound, *args)  # type: ignore[assignment]
        parameters = self._spec.bind(args, kwargs)
        return self._call(self, parameters, wait_for, return_state)  # type: ignore[no-any-return]

    def _flow_context(self, method: str) -> FlowRunContext:
        flow_ctx = FlowRunContext.get()
        if flow_ctx is None:
            raise MissingContextError(
                f"Task {self.name!r} was given to .{method}() outside a flow run. .{method}() "
                f"needs a running flow, whose task runner runs the task: call it inside a function "
                f"decorated with @flow, or call the task directly ({self.name}(...)) to run it "
                f"inline."
            )
        return flow_ctx

    def submit(self, *args: Any, **kwargs: Any) -> FlowpodFuture[R]:
        """Run the task on the flow's task runner; return a future at once.

        ``wait_for=[futures]`` delays the start until those finish (a failed one makes this run
        NotReady); ``return_state=True`` waits and returns the final state instead.
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        flow_ctx = self._flow_context("submit")
        if self._bound is not None:
            args = (self._bound, *args)
        parameters = self._spec.bind(args, kwargs)
        future: FlowpodFuture[R] = flow_ctx.task_runner.submit(self, parameters, wait_for)
        if return_state:
            future.wait()
            return future.state  # type: ignore[return-value]
        return future

    def map(self, *args: Any, **kwargs: Any) -> FlowpodFutureList[R]:
        """Submit one run per element of the iterable arguments (zipped; lengths must match).

        ``unmapped(x)`` passes ``x`` whole to every run; ``quote(x)`` is neither iterated nor
        searched for futures. Strings and bytes are never iterated.
        """
        return_state = kwargs.pop("return_state", False)
        wait_for = kwargs.pop("wait_for", None)
        flow_ctx = self._flow_context("map")
        if self._bound is not None:
            args = (self._bound, *args)
        parameters = self._spec.bind(args, kwargs)
        static: dict[str, Any] = {}
        mapped: dict[str, list[Any]] = {}
        for name, value in parameters.items():
            if self._bound is not None and value is self._bound:
                static[name] = value
            elif isinstance(value, unmapped):
                static[name] = value.value
            elif isinstance(value, quote):
                static[name] = value
            else:
                if isinstance(value, FlowpodFuture):
                    value = value.result()
                if _is_mappable(value):
                    mapped[name] = list(value)
                else:
                    static[name] = value
        if not mapped:
            raise MappingMissingIterable(
                f"Task {self.name!r}: .map() needs at least one iterable argument to map over; "
                f"got {', '.join(f'{k}={v!r}' for k, v in parameters.items()) or 'no arguments'}. "
                "Pass a list (or wrap constants in unmapped(...))."
            )
        lengths = {name: len(values) for name, values in mapped.items()}
        if len(set(lengths.values())) > 1:
            raise MappingLengthMismatch(
                f"Task {self.name!r}: .map() got iterables of different lengths "
                f"({', '.join(f'{k}: {n}' for k, n in lengths.items())}); they are zipped, so "
                "they must all have the same length. Wrap arguments that should go whole to "
                "every run in unmapped(...)."
            )
        count = next(iter(lengths.values()))
        parameters_list = [
            {name: (mapped[name][i] if name in mapped else static[name]) for name in parameters}
            for i in range(count)
        ]
        futures: FlowpodFutureList[R] = flow_ctx.task_runner.map(self, parameters_list, wait_for)
        if return_state:
            futures.wait()
            return [f.state for f in futures]  # type: ignore[return-value]
        return futures

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, fn={getattr(self.fn, '__qualname__', self.fn)})"


def _store_for(owner: Any) -> CacheStore:
    """The CacheStore over ``owner.result_storage`` (a folder path or a ResultStore), memoised."""
    store: CacheStore | None = owner.__dict__.get("_store")
    if store is None:
        from flowpod._storage.stores import CacheStore, LocalResultStore

        backend = owner.result_storage
        if isinstance(backend, str | Path):
            backend = LocalResultStore(Path(backend))
        store = owner._store = CacheStore(backend)
    return store


def _is_mappable(value: Any) -> bool:
    if isinstance(value, str | bytes | bytearray):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


@overload
def task(__fn: Callable[P, R]) -> Task[P, R]: ...


@overload
def task(
    __fn: None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    version: str | None = None,
    cache_policy: CachePolicy | Any = NotSet,
    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None,
    cache_expiration: datetime.timedelta | None = None,
    task_run_name: str | Callable[..., str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: Any = None,
    retry_jitter_factor: float | None = None,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: str | None = None,
    result_storage_key: str | None = None,
    cache_result_in_memory: bool = True,
    timeout_seconds: int | float | None = None,
    log_prints: bool | None = None,
    refresh_cache: bool | None = None,
    on_completion: list[Callable[..., Any]] | None = None,
    on_failure: list[Callable[..., Any]] | None = None,
    on_running: list[Callable[..., Any]] | None = None,
    retry_condition_fn: Callable[..., Any] | None = None,
    viz_return_value: Any = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Turn a function into a task: ``@task`` or ``@task(retries=2, ...)``.

    Arguments (all optional): name, description, tags, version, cache_policy, cache_key_fn,
    cache_expiration, task_run_name, retries, retry_delay_seconds, retry_jitter_factor,
    retry_condition_fn, persist_result, result_storage, result_serializer, result_storage_key,
    cache_result_in_memory, timeout_seconds, log_prints, refresh_cache, on_completion,
    on_failure, on_running. Bad values raise TypeError/ValueError here, at decoration.
    """
    if __fn is not None:
        return Task(__fn, **options)
    # Validate the options now, not only when the function arrives.
    probe = Task(_probe, **options)
    del probe

    def decorator(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, **options)

    return decorator


def _probe() -> None:
    """Stand-in function used to validate decorator options before the real one is known."""
