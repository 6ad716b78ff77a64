"""``@flow`` and the ``Flow`` object.

A flow is a function whose call is a flow run: parameters validated against its type hints, a
two-word run name, a task runner for the tasks it submits, retries, a timeout, hooks and a final
state computed from what it returns (``flowpod.states.return_value_to_state``). Calling a sync
flow returns its result (or raises its exception); calling an async flow returns a coroutine.
The options, their defaults and their checks are ``flowpod._engine.options.FlowOptions``; the run
itself is the engine's (``flowpod._engine.flow_engine``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from flowpod._common.parameters import CallSpec
from flowpod._engine.options import (
    FLOW_OPTION_NAMES,
    FlowOptions,
    check_hooks,
    picklable_state,
    restore_state,
)
from flowpod.context.views import FlowLike
from flowpod.task_runners import TaskRunner, ThreadPoolTaskRunner

__all__ = ["Flow", "flow"]

P = ParamSpec("P")
R = TypeVar("R")

_HOOKS = ("on_completion", "on_failure", "on_cancellation", "on_crashed", "on_running")


class Flow(FlowLike, Generic[P, R]):
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
        # The keyword arguments are exactly the options (spelled out for type checkers and IDEs):
        # gather them by the options' own field names rather than naming each once more.
        given = locals()
        self._setup(fn, FlowOptions(**{option: given[option] for option in FLOW_OPTION_NAMES}))

    def _setup(self, fn: Callable[P, R], options: FlowOptions) -> None:
        if not callable(fn):
            raise TypeError(f"@flow must decorate a function; got {type(fn).__name__} {fn!r}.")
        if options.name is None:
            name = getattr(fn, "__name__", type(fn).__name__).replace("_", "-")
            options = options.changed({"name": name})
        options = options.checked()
        runner = options.task_runner
        if runner is None:
            runner = ThreadPoolTaskRunner()
        elif isinstance(runner, type) and issubclass(runner, TaskRunner):
            runner = runner()
        if not isinstance(runner, TaskRunner):
            raise TypeError(
                "task_runner must be a TaskRunner (e.g. ThreadPoolTaskRunner(max_workers=4)); "
                f"got {type(runner).__name__} {runner!r}."
            )
        self._options = options = options.changed({"task_runner": runner})
        # Each option is an attribute, as given, except those resolved here; validate_parameters
        # is the method, its option the should_validate_parameters attribute.
        attributes = {option: getattr(options, option) for option in FLOW_OPTION_NAMES}
        del attributes["validate_parameters"]
        attributes.update(
            {hooks: check_hooks(getattr(options, hooks), hooks, "flow") for hooks in _HOOKS},
            fn=fn,
            description=(options.description if options.description is not None
                         else inspect.getdoc(fn)),
            should_validate_parameters=options.validate_parameters,
            isasync=inspect.iscoroutinefunction(fn),
            _spec=CallSpec(fn, "Flow"),
        )
        self.__dict__.update(attributes)
        self._store: Any = None
        self._wrap(fn)

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some decorator arguments changed (same names as ``@flow``)."""
        if "task_runner" not in options:
            options = {**options, "task_runner": self.task_runner.duplicate()}
        new: Flow[P, R] = Flow.__new__(Flow)
        new._setup(self.fn, self._options.changed(options))
        return new

    def __getstate__(self) -> dict[str, Any]:
        return picklable_state(self)

    def __setstate__(self, state: dict[str, Any]) -> None:
        restore_state(self, state, FlowOptions)

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

        bound: Flow[P, R] = Flow.__new__(Flow)
        bound._setup(functools.partial(self.fn, instance), self._options)
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
