"""The options of ``@task`` and ``@flow``: each declared once, with its default, and checked.

``TaskOptions`` and ``FlowOptions`` are frozen records of the decorator's arguments as given
(``None``/``NotSet`` where nothing was said). A ``Task`` or ``Flow`` keeps one and derives its
attributes from it; ``with_options(**changes)`` is ``dataclasses.replace`` of it, checked again.
Every argument is checked here, when the decorator runs, so a mistake fails at import time with a
message that says what is accepted.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flowpod._contract.retrying import validate_retry_delay_seconds, validate_retry_jitter_factor
from flowpod.cache_policies import NO_CACHE, CachePolicy

__all__ = [
    "FLOW_OPTION_NAMES",
    "TASK_OPTION_NAMES",
    "FlowOptions",
    "NotSet",
    "TaskOptions",
    "picklable_state",
    "restore_state",
]


class _NotSet:
    def __repr__(self) -> str:
        return "NotSet"


NotSet: Any = _NotSet()

_SERIALIZERS = ("pickle", "json")
_FORBIDDEN_NAME_CHARACTERS = "/%&><"

Hooks = list[Callable[..., Any]] | None


@dataclasses.dataclass(frozen=True)
class TaskOptions:
    """The arguments of ``@task`` (see ``flowpod.tasks.task``)."""

    name: str | None = None
    description: str | None = None
    tags: Iterable[str] | None = None
    version: str | None = None
    cache_policy: CachePolicy | Any = NotSet
    cache_key_fn: Callable[[Any, dict[str, Any]], str | None] | None = None
    cache_expiration: datetime.timedelta | None = None
    task_run_name: str | Callable[..., str] | None = None
    retries: int | None = None
    retry_delay_seconds: Any = None
    retry_jitter_factor: float | None = None
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: str | None = None
    result_storage_key: str | None = None
    cache_result_in_memory: bool = True
    timeout_seconds: int | float | None = None
    log_prints: bool | None = None
    refresh_cache: bool | None = None
    on_completion: Hooks = None
    on_failure: Hooks = None
    on_running: Hooks = None
    retry_condition_fn: Callable[..., Any] | None = None
    viz_return_value: Any = None

    def checked(self) -> TaskOptions:
        """These options, checked (TypeError/ValueError), with persist_result and cache_policy
        settled: a task that asks for caching in any way persists its result, unless told not
        to; one told not to persist has no cache policy."""
        _check_name(self.name)
        _check_optional(self.description, str, "description", "a str")
        _check_optional(self.version, str, "version", "a str")
        policy = self.cache_policy
        if policy is not NotSet and policy is not None and not isinstance(policy, CachePolicy):
            raise TypeError(
                "cache_policy must be a CachePolicy (e.g. flowpod.cache_policies.INPUTS); "
                f"got {type(policy).__name__} {policy!r}."
            )
        if self.cache_key_fn is not None and not callable(self.cache_key_fn):
            raise TypeError(
                f"cache_key_fn must be callable(context, parameters); got {self.cache_key_fn!r}."
            )
        _check_expiration(self.cache_expiration)
        _check_run_name(self.task_run_name, "task_run_name", "fetch-{url}")
        _check_retries(self.retries)
        validate_retry_delay_seconds(self.retry_delay_seconds)
        validate_retry_jitter_factor(self.retry_jitter_factor)
        if self.retry_condition_fn is not None and not callable(self.retry_condition_fn):
            raise TypeError(
                "retry_condition_fn must be callable(task, task_run, state) -> bool; "
                f"got {self.retry_condition_fn!r}."
            )
        _check_optional(self.persist_result, bool, "persist_result", "a bool")
        _check_storage(self.result_storage)
        _check_serializer(self.result_serializer)
        _check_optional(self.result_storage_key, str, "result_storage_key", "a str template")
        if not isinstance(self.cache_result_in_memory, bool):
            raise TypeError(
                f"cache_result_in_memory must be a bool; got {self.cache_result_in_memory!r}."
            )
        _check_timeout(self.timeout_seconds)
        _check_optional(self.log_prints, bool, "log_prints", "a bool")
        _check_optional(self.refresh_cache, bool, "refresh_cache", "a bool")
        check_tags(self.tags)
        for hooks in ("on_completion", "on_failure", "on_running"):
            check_hooks(getattr(self, hooks), hooks)
        persist = self.persist_result
        if persist is None and (
            (policy is not NotSet and policy is not None and policy is not NO_CACHE)
            or self.cache_key_fn is not None
            or self.result_storage_key is not None
            or self.result_storage is not None
            or self.result_serializer is not None
        ):
            persist = True
        if persist is False:
            policy = NO_CACHE
        return dataclasses.replace(self, persist_result=persist, cache_policy=policy)

    def changed(self, changes: dict[str, Any]) -> TaskOptions:
        """``with_options``: these options with ``changes`` (same names as ``@task``). A changed
        cache setting re-derives persist_result, unless that is changed too."""
        _check_names(changes, TASK_OPTION_NAMES)
        if "persist_result" not in changes and self.persist_result is not None and (
            {"cache_policy", "cache_key_fn", "result_storage_key"} & set(changes)
        ):
            changes = {**changes, "persist_result": None}
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """The arguments of ``@flow`` (see ``flowpod.flows.flow``)."""

    name: str | None = None
    version: str | None = None
    flow_run_name: str | Callable[..., str] | None = None
    retries: int | None = None
    retry_delay_seconds: int | float | None = None
    task_runner: Any = None
    description: str | None = None
    timeout_seconds: int | float | None = None
    validate_parameters: bool = True
    persist_result: bool | None = None
    result_storage: Any = None
    result_serializer: str | None = None
    cache_result_in_memory: bool = True
    log_prints: bool | None = None
    on_completion: Hooks = None
    on_failure: Hooks = None
    on_cancellation: Hooks = None
    on_crashed: Hooks = None
    on_running: Hooks = None

    def checked(self) -> FlowOptions:
        """These options, checked (TypeError/ValueError). The task runner is the flow's to
        check: it is of a layer above the engine."""
        name = self.name
        _check_name(name)
        assert name is not None  # a flow's name is derived before the check
        bad = [c for c in _FORBIDDEN_NAME_CHARACTERS if c in name]
        if bad:
            raise ValueError(
                f"Flow name {name!r} contains {''.join(bad)!r}; names cannot contain any of "
                f"{_FORBIDDEN_NAME_CHARACTERS!r}."
            )
        _check_optional(self.version, str, "version", "a str")
        _check_optional(self.description, str, "description", "a str")
        _check_run_name(self.flow_run_name, "flow_run_name", "etl-{day}")
        _check_retries(self.retries)
        delay = self.retry_delay_seconds
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
            raise TypeError(
                f"A flow's retry_delay_seconds must be a number of seconds; got {delay!r}."
            )
        validate_retry_delay_seconds(delay)
        _check_timeout(self.timeout_seconds)
        if not isinstance(self.validate_parameters, bool):
            raise TypeError(
                f"validate_parameters must be a bool; got {self.validate_parameters!r}."
            )
        _check_optional(self.persist_result, bool, "persist_result", "a bool")
        _check_storage(self.result_storage)
        _check_serializer(self.result_serializer)
        _check_optional(self.log_prints, bool, "log_prints", "a bool")
        for hooks in ("on_completion", "on_failure", "on_cancellation", "on_crashed",
                      "on_running"):
            check_hooks(getattr(self, hooks), hooks, "flow")
        return self

    def changed(self, changes: dict[str, Any]) -> FlowOptions:
        """``with_options``: these options with ``changes`` (same names as ``@flow``)."""
        _check_names(changes, FLOW_OPTION_NAMES)
        return dataclasses.replace(self, **changes)


TASK_OPTION_NAMES = tuple(field.name for field in dataclasses.fields(TaskOptions))
FLOW_OPTION_NAMES = tuple(field.name for field in dataclasses.fields(FlowOptions))


def picklable_state(owner: Any) -> dict[str, Any]:
    """The pickled state of a Task or Flow: its attributes, without the memoised store (it holds
    locks and file descriptors; it is rebuilt where the object lands), and with the options as
    the plain dict of arguments they have always travelled as, so that a pod running another
    flowpod version still loads them."""
    state = dict(owner.__dict__)
    state["_store"] = None
    options = state["_options"]
    state["_options"] = {field: getattr(options, field) for field in _names(options)}
    return state


def restore_state(owner: Any, state: dict[str, Any], kind: type[TaskOptions | FlowOptions]
                  ) -> None:
    """Undo ``picklable_state``."""
    options = state["_options"]
    if isinstance(options, dict):
        state = {**state, "_options": kind(**options)}
    owner.__dict__.update(state)


def _names(options: TaskOptions | FlowOptions) -> tuple[str, ...]:
    return TASK_OPTION_NAMES if isinstance(options, TaskOptions) else FLOW_OPTION_NAMES


# -- checks -------------------------------------------------------------------------------------


def _check_names(changes: dict[str, Any], accepted: tuple[str, ...]) -> None:
    unknown = set(changes) - set(accepted)
    if unknown:
        raise TypeError(
            f"with_options() got unexpected argument(s) {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(sorted(accepted))}."
        )


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str; got {name!r}.")


def _check_run_name(value: Any, option: str, example: str) -> None:
    if value is not None and not (isinstance(value, str) or callable(value)):
        raise TypeError(
            f"{option} must be a str template (e.g. {example!r}) or a callable; "
            f"got {type(value).__name__} {value!r}."
        )


def check_hooks(value: Any, name: str, kind: str = "task") -> list[Callable[..., Any]]:
    """``value`` (None or a list of callables) as a list; TypeError for anything else."""
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


def check_tags(tags: Any) -> frozenset[str]:
    """``tags`` (None or a collection of strings) as a frozenset; TypeError for anything else."""
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


def _check_expiration(value: Any) -> None:
    _check_optional(value, datetime.timedelta, "cache_expiration", "a timedelta")
    # A zero or negative lifetime would write records that are expired before anyone reads
    # them: the cache would cost a write per run and never hit. Say so now, not never.
    if value is not None and value <= datetime.timedelta(0):
        raise ValueError(
            f"cache_expiration must be a positive timedelta, e.g. timedelta(hours=1), or None "
            f"for records that never expire; got {value!r}. To turn caching off, use "
            f"cache_policy=NO_CACHE."
        )


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
    from flowpod._storage import ResultStore

    if not isinstance(value, ResultStore):
        raise TypeError(
            "result_storage must be a folder path or a flowpod ResultStore; "
            f"got {type(value).__name__} {value!r}."
        )

