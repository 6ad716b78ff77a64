"""What the run contexts and the engine know of a task, a flow and a task runner.

Both sit below ``flowpod.tasks``, ``flowpod.flows`` and ``flowpod.task_runners`` (which use them),
so they must not import those, not even for annotations. ``TaskLike`` and ``FlowLike`` are the
typed attributes of a task and of a flow: ``Task`` and ``Flow`` inherit them (and set them from
their options, ``flowpod._engine.options``); the contexts and the engine are typed against them.
``RunnerLike`` is the ``Protocol`` a task runner satisfies.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flowpod._common.parameters import CallSpec
    from flowpod.cache_policies import CachePolicy

__all__ = ["FlowLike", "RunnerLike", "TaskLike", "Wrapper"]


class Wrapper:
    """What a task and a flow have in common: the function they wrap and the options that mean
    the same for both."""

    fn: Callable[..., Any]
    name: str
    description: str | None
    version: str | None
    retries: int | None
    persist_result: bool | None
    result_storage: Any
    result_serializer: str | None
    cache_result_in_memory: bool
    timeout_seconds: int | float | None
    log_prints: bool | None
    on_completion: list[Callable[..., Any]]
    on_failure: list[Callable[..., Any]]
    on_running: list[Callable[..., Any]]
    # Derived from the function:
    isasync: bool
    _spec: CallSpec

    def _wrap(self, fn: Callable[..., Any]) -> None:
        """Look like ``fn`` to introspection: its doc, name, qualname, module, ``__wrapped__``."""
        try:
            self.__doc__ = fn.__doc__
            self.__name__ = fn.__name__
            self.__qualname__ = fn.__qualname__
            self.__module__ = fn.__module__
            self.__wrapped__ = fn
        except AttributeError:
            pass


class TaskLike(Wrapper):
    """What a task is made of, once its options are resolved (``flowpod.tasks.Task``)."""

    tags: set[str]
    cache_policy: CachePolicy
    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None
    cache_expiration: datetime.timedelta | None
    task_run_name: str | Callable[..., str] | None
    retry_delay_seconds: Any
    retry_jitter_factor: float | None
    result_storage_key: str | None
    refresh_cache: bool | None
    retry_condition_fn: Callable[..., Any] | None
    viz_return_value: Any
    # Derived from the function:
    task_key: str
    isgenerator: bool


class RunnerLike(Protocol):
    """A task runner as a flow run uses it (``flowpod.task_runners.TaskRunner``).

    ``submit`` returns a ``FlowpodFuture`` and ``map`` a ``FlowpodFutureList``; they are typed
    Any here because the futures sit above the run contexts (they hold a task run).
    """

    def duplicate(self) -> RunnerLike: ...
    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None) -> Any: ...
    def map(
        self, task: Any, parameters_list: list[dict[str, Any]], wait_for: Any = None
    ) -> Any: ...
    def __enter__(self) -> RunnerLike: ...
    def __exit__(self, *exc_info: Any) -> None: ...


class FlowLike(Wrapper):
    """What a flow is made of, once its options are resolved (``flowpod.flows.Flow``)."""

    flow_run_name: str | Callable[..., str] | None
    retry_delay_seconds: int | float | None
    task_runner: RunnerLike
    should_validate_parameters: bool
    on_cancellation: list[Callable[..., Any]]
    on_crashed: list[Callable[..., Any]]

    def validate_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """``parameters`` coerced to the function's type hints; ParameterTypeError if they
        do not fit."""
        return self._spec.validate(parameters, self.name)
