"""``@task`` and the ``Task`` object: a function with its options, and the ways to call it.

Calling a task runs it inline (in a flow: named ``<task>-<n>``; outside one: named ``<task>``);
``.submit()`` hands it to the flow's task runner and returns a future; ``.map()`` submits one run
per element of its iterable arguments. The options, their defaults and their checks are
``flowpod._engine.options.TaskOptions``; the run itself is the engine's
(``flowpod._engine.task_engine``).
"""

from __future__ import annotations

import copy
import datetime
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

import flowpod._engine.generators as _task_generators
import flowpod._engine.task_engine as _task_engine
from flowpod._common.hashing import compute_task_key, task_input_hash
from flowpod._common.parameters import CallSpec
from flowpod._contract.retrying import exponential_backoff
from flowpod._engine.options import (
    TASK_OPTION_NAMES,
    NotSet,
    TaskOptions,
    check_hooks,
    picklable_state,
    restore_state,
)
from flowpod.cache_policies import DEFAULT, CachePolicy
from flowpod.context import FlowRunContext
from flowpod.context.views import TaskLike
from flowpod.exceptions import MappingLengthMismatch, MappingMissingIterable, MissingContextError
from flowpod.futures import FlowpodFuture, FlowpodFutureList
from flowpod.utilities.annotations import quote, unmapped

__all__ = ["Task", "exponential_backoff", "task", "task_input_hash"]

P = ParamSpec("P")
R = TypeVar("R")


class Task(TaskLike, Generic[P, R]):
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
        # The keyword arguments are exactly the options (spelled out for type checkers and IDEs):
        # gather them by the options' own field names rather than naming each once more.
        given = locals()
        self._setup(fn, TaskOptions(**{option: given[option] for option in TASK_OPTION_NAMES}))

    def _setup(self, fn: Callable[P, R], options: TaskOptions) -> None:
        if not callable(fn):
            raise TypeError(f"@task must decorate a function; got {type(fn).__name__} {fn!r}.")
        if isinstance(fn, classmethod | staticmethod):
            raise TypeError(
                "@task must be applied below @classmethod/@staticmethod: write @classmethod (or "
                "@staticmethod) on top, then @task, then the function."
            )
        if options.name is None:
            options = options.changed({"name": getattr(fn, "__name__", None) or type(fn).__name__})
        options = options.checked()
        self._options = options
        # Each option is an attribute, as given, except those resolved here.
        attributes = {option: getattr(options, option) for option in TASK_OPTION_NAMES}
        attributes.update(
            fn=fn,
            description=(options.description if options.description is not None
                         else inspect.getdoc(fn)),
            tags=set(options.tags) if options.tags is not None else set(),
            cache_policy=(DEFAULT if options.cache_policy is NotSet or options.cache_policy is None
                          else options.cache_policy),
            on_completion=check_hooks(options.on_completion, "on_completion"),
            on_failure=check_hooks(options.on_failure, "on_failure"),
            on_running=check_hooks(options.on_running, "on_running"),
            isasync=inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn),
            isgenerator=inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn),
            _spec=CallSpec(fn, "Task"),
        )
        self.__dict__.update(attributes)
        self.task_key = compute_task_key(self.name, fn, self.tags)
        self._bound: Any = None
        self._store: Any = None  # the memoised CacheStore (flowpod._engine.caching)
        self._call: Callable[..., Any]
        if inspect.isasyncgenfunction(fn):
            self._call = _task_generators.call_async_generator
        elif inspect.isgeneratorfunction(fn):
            self._call = _task_generators.call_generator
        elif self.isasync:
            self._call = _task_engine.call_async
        else:
            self._call = _task_engine.call_sync
        self._wrap(fn)

    # -- options -----------------------------------------------------------------------------

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some decorator arguments changed (same names as ``@task``)."""
        new: Task[P, R] = Task.__new__(Task)
        new._setup(self.fn, self._options.changed(options))
        new._bound = self._bound
        return new

    def __getstate__(self) -> dict[str, Any]:
        return picklable_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_state(self, state, TaskOptions)

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
