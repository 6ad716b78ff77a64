"""``@flow`` and the ``Flow`` object.

A flow is a function whose call is a flow run: parameters validated against its type hints, a
two-word run name, a task runner for the tasks it submits, retries, a timeout, hooks and a final
state computed from what it returns (``flowpod.states.return_value_to_state``). Calling a sync
flow returns its result (or raises its exception); calling an async flow returns a coroutine.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from flowpod._common.parameters import CallSpec
from flowpod._contract.retrying import validate_retry_delay_seconds
from flowpod.task_runners import TaskRunner, ThreadPoolTaskRunner
from flowpod.tasks import (
    _check_hooks,
    _check_optional,
    _check_retries,
    _check_serializer,
    _check_storage,
    _check_timeout,
)

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")

_FORBIDDEN_NAME_CHARACTERS = "/%&><"


class Flow(Generic[P, R]):
    """A function turned into a flow; call it to run it."""

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        version: str | None = None,
        flow_run_name: str | Callable[..., str] | None = None,
        retries: int | None = None,
        retry_delay_seconds: int | float | None = None,
        task_runner: TaskRunner | type[TaskRunner] | None = None,
        description: str | None = None,
        timeout_seconds: int | float | None = None,
        validate_parameters: bool = True,
        persist_result: bool | None = None,
        result_storage: Any = None,
        result_serializer: str | None = None,
        cache_result_in_memory: bool = True,
        log_prints: bool | None = None,
        on_completion: list[Callable[..., Any]] | None = None,
        on_failure: list[Callable[..., Any]] | None = None,
        on_cancellation: list[Callable[..., Any]] | None = None,
        on_crashed: list[Callable[..., Any]] | None = None,
        on_running: list[Callable[..., Any]] | None = None,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"@flow must decorate a function; got {type(fn).__name__} {fn!r}.")
        if name is None:
            name = getattr(fn, "__name__", type(fn).__name__).replace("_", "-")
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str; got {name!r}.")
        bad = [c for c in _FORBIDDEN_NAME_CHARACTERS if c in name]
        if bad:
            raise ValueError(
                f"Flow name {name!r} contains {''.join(bad)!r}; names cannot contain any of "
                f"{_FORBIDDEN_NAME_CHARACTERS!r}."
            )
        _check_optional(version, str, "version", "a str")
        _check_optional(description, str, "description", "a str")
        if flow_run_name is not None and not (
            isinstance(flow_run_name, str) or callable(flow_run_name)
        ):
            raise TypeError(
                "flow_run_name must be a str template (e.g. 'etl-{day}') or a callable; "
                f"got {type(flow_run_name).__name__} {flow_run_name!r}."
            )
        _check_retries(retries)
        if retry_delay_seconds is not None and (
            isinstance(retry_delay_seconds, bool)
            or not isinstance(retry_delay_seconds, int | float)
        ):
            raise TypeError(
                f"A flow's retry_delay_seconds must be a number of seconds; got "
                f"{retry_delay_seconds!r}."
            )
        validate_retry_delay_seconds(retry_delay_seconds)
        if task_runner is None:
            task_runner = ThreadPoolTaskRunner()
        elif isinstance(task_runner, type) and issubclass(task_runner, TaskRunner):
            task_runner = task_runner()
        if not isinstance(task_runner, TaskRunner):
            raise TypeError(
                "task_runner must be a TaskRunner (e.g. ThreadPoolTaskRunner(max_workers=4)); "
                f"got {type(task_runner).__name__} {task_runner!r}."
            )
        _check_timeout(timeout_seconds)
        if not isinstance(validate_parameters, bool):
            raise TypeError(f"validate_parameters must be a bool; got {validate_parameters!r}.")
        _check_optional(persist_result, bool, "persist_result", "a bool")
        _check_storage(result_storage)
        _check_serializer(result_serializer)
        _check_optional(log_prints, bool, "log_prints", "a bool")

        self.fn = fn
        self.name = name
        self.version = version
        self.flow_run_name = flow_run_name
        self.retries = retries
        self.retry_delay_seconds = retry_delay_seconds
        self.task_runner: TaskRunner = task_runner
        self.description = description if description is not None else inspect.getdoc(fn)
        self.timeout_seconds = timeout_seconds
        self.should_validate_parameters = validate_parameters
        self.persist_result = persist_result
        self.result_storage = result_storage
        self.result_serializer = result_serializer
        self.cache_result_in_memory = cache_result_in_memory
        self.log_prints = log_prints
        self.on_completion = _check_hooks(on_completion, "on_completion", "flow")
        self.on_failure = _check_hooks(on_failure, "on_failure", "flow")
        self.on_cancellation = _check_hooks(on_cancellation, "on_cancellation", "flow")
        self.on_crashed = _check_hooks(on_crashed, "on_crashed", "flow")
        self.on_running = _check_hooks(on_running, "on_running", "flow")
        self.isasync = inspect.iscoroutinefunction(fn)
        self._spec = CallSpec(fn, "Flow")
        self._store: Any = None
        self._options: dict[str, Any] = {
            "name": name, "version": version, "flow_run_name": flow_run_name, "retries": retries,
            "retry_delay_seconds": retry_delay_seconds, "task_runner": task_runner,
            "description": description, "timeout_seconds": timeout_seconds,
            "validate_parameters": validate_parameters, "persist_result": persist_result,
            "result_storage": result_storage, "result_serializer": result_serializer,
            "cache_result_in_memory": cache_result_in_memory, "log_prints": log_prints,
            "on_completion": on_completion, "on_failure": on_failure,
            "on_cancellation": on_cancellation, "on_crashed": on_crashed,
            "on_running": on_running,
        }
        try:
            self.__doc__ = fn.__doc__
            self.__name__ = fn.__name__
            self.__qualname__ = fn.__qualname__
            self.__module__ = fn.__module__
            self.__wrapped__ = fn
        except AttributeError:
            pass

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some decorator arguments changed (same names as ``@flow``)."""
        unknown = set(options) - set(self._options)
        if unknown:
            raise TypeError(
                f"with_options() got unexpected argument(s) {', '.join(sorted(unknown))}; "
                f"accepted: {', '.join(sorted(self._options))}."
            )
        merged = dict(self._options)
        merged.update(options)
        if "task_runner" not in options:
            merged["task_runner"] = self.task_runner.duplicate()
        return Flow(self.fn, **merged)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``parameters`` coerced to the function's type hints; ParameterTypeError if they
        do not fit."""
        return self._spec.validate(parameters, self.name)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        import flowpod._engine.flow_engine as _flow_engine
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        if wait_for:
            # A subflow may wait on tasks of its parent: block until they are final (an upstream
            # that did not complete raises UpstreamTaskError, as it would for a task).
            from flowpod._engine.inputs import resolve_inputs

            resolve_inputs({}, wait_for)
        if self.isasync:
            return _flow_engine.run_flow_async(self, args, kwargs, return_state)  # type: ignore[return-value]
        return _flow_engine.run_flow_sync(self, args, kwargs, return_state)  # type: ignore[no-any-return]

    def __get__(self, instance: Any, owner: type | None = None) -> Flow[P, R]:
        if instance is None:
            return self
        import functools

        bound: Flow[P, R] = Flow(functools.partial(self.fn, instance), **self._options)
        return bound

    def __repr__(self) -> str:
        return f"Flow(name={self.name!r}, fn={getattr(self.fn, '__qualname__', self.fn)})"


@overload
def flow(__fn: Callable[P, R]) -> Flow[P, R]: ...


@overload
def flow(
    __fn: None = None,
    *,
    name: str | None = None,
    version: str | None = None,
    flow_run_name: str | Callable[..., str] | None = None,
    retries: int | None = None,
    retry_delay_seconds: int | float | None = None,
    task_runner: TaskRunner | type[TaskRunner] | None = None,
    description: str | None = None,
    timeout_seconds: int | float | None = None,
    validate_parameters: bool = True,
    persist_result: bool | None = None,
    result_storage: Any = None,
    result_serializer: str | None = None,
    cache_result_in_memory: bool = True,
    log_prints: bool | None = None,
    on_completion: list[Callable[..., Any]] | None = None,
    on_failure: list[Callable[..., Any]] | None = None,
    on_cancellation: list[Callable[..., Any]] | None = None,
    on_crashed: list[Callable[..., Any]] | None = None,
    on_running: list[Callable[..., Any]] | None = None,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(__fn: Callable[P, R] | None = None, **options: Any) -> Any:
    """Turn a function into a flow: ``@flow`` or ``@flow(name=..., retries=..., ...)``.

    Arguments (all optional): name (default: the function name with ``_`` -> ``-``), version,
    description, flow_run_name, retries, retry_delay_seconds, task_runner, timeout_seconds,
    validate_parameters, persist_result, result_storage, result_serializer, log_prints and the
    hooks on_completion, on_failure, on_cancellation, on_crashed, on_running.
    """
    if __fn is not None:
        return Flow(__fn, **options)
    Flow(_probe, **options)

    def decorator(fn: Callable[P, R]) -> Flow[P, R]:
        return Flow(fn, **options)

    return decorator


def _probe() -> None:
    """Stand-in function used to validate decorator options before the real one is known."""
