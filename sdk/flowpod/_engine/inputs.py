"""Resolving a task run's inputs: waiting for upstream futures and replacing them by results.

Futures (also inside lists, tuples, sets and dicts) become their results; ``quote(x)`` passes ``x``
untouched; ``allow_failure(f)`` passes the upstream's exception instead of failing; ``wait_for``
upstreams are waited for. An upstream that did not complete raises UpstreamTaskError, which the
driver turns into the NotReady state.
"""

from __future__ import annotations

from typing import Any

from flowpod._engine.effects import Blocking, Steps
from flowpod.exceptions import UpstreamTaskError
from flowpod.futures import FlowpodFuture
from flowpod.states import State, StateType
from flowpod.utilities.annotations import BaseAnnotation, allow_failure, quote

__all__ = ["inputs_ready", "inputs_steps", "needs_waiting", "resolve_inputs"]

_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _upstream_error(future: FlowpodFuture[Any], state: State[Any]) -> UpstreamTaskError:
    return UpstreamTaskError(
        f"Upstream task run {future.task_run.name!r} did not reach a 'COMPLETED' state "
        f"(it ended {state.name})."
    )


def _resolve_value(value: Any, allow_fail: bool) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if isinstance(value, FlowpodFuture):
        value.wait()
        state = value.state
        if state.type is StateType.COMPLETED:
            return state.data
        if allow_fail:
            return state.result(raise_on_failure=False)
        raise _upstream_error(value, state)
    if isinstance(value, State):
        if value.type is StateType.COMPLETED or allow_fail:
            return value.result(raise_on_failure=False)
        raise UpstreamTaskError(f"An upstream state passed as an argument is {value.name}.")
    if isinstance(value, BaseAnnotation):
        if isinstance(value, quote):
            return value.value
        return _resolve_value(value.value, allow_fail or isinstance(value, allow_failure))
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        items = [_resolve_value(item, allow_fail) for item in value]
        if all(a is b for a, b in zip(items, value, strict=False)):
            return value
        return items if kind is list else kind(items)
    if kind is dict:
        resolved = {k: _resolve_value(v, allow_fail) for k, v in value.items()}
        if all(resolved[k] is v for k, v in value.items()):
            return value
        return resolved
    return value


def _wait_for_upstreams(wait_for: Any) -> None:
    for item in wait_for if isinstance(wait_for, list | tuple | set) else [wait_for]:
        allow_fail = isinstance(item, allow_failure)
        future = item.value if isinstance(item, BaseAnnotation) else item
        if isinstance(future, FlowpodFuture):
            future.wait()
            state = future.state
            if state.type is not StateType.COMPLETED and not allow_fail:
                raise _upstream_error(future, state)


def resolve_inputs(parameters: dict[str, Any], wait_for: Any) -> dict[str, Any]:
    """Parameters with futures replaced by results; UpstreamTaskError if an upstream failed."""
    if wait_for:
        _wait_for_upstreams(wait_for)
    resolved = parameters
    for name, value in parameters.items():
        if type(value) in _SCALARS:
            continue
        new = _resolve_value(value, False)
        if new is not value:
            if resolved is parameters:
                resolved = dict(parameters)
            resolved[name] = new
    return resolved


_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})


def needs_waiting(value: Any) -> bool:
    if isinstance(value, FlowpodFuture):
        return True
    if isinstance(value, BaseAnnotation) and not isinstance(value, quote):
        return needs_waiting(value.value)
    if type(value) in (list, tuple, set, frozenset):
        return any(needs_waiting(item) for item in value)
    if type(value) is dict:
        return any(needs_waiting(item) for item in value.values())
    return False


def inputs_ready(parameters: dict[str, Any], wait_for: Any) -> bool:
    """Nothing to wait for: no ``wait_for`` and no upstream future among the parameters."""
    if wait_for:
        return False
    for value in parameters.values():
        # Scalars are most arguments; this runs on every call, so skip the full check for them.
        if type(value) not in _SCALARS and needs_waiting(value):
            return False
    return True


def inputs_steps(parameters: dict[str, Any], wait_for: Any) -> Steps[dict[str, Any]]:
    """``resolve_inputs`` as a step of a run: waiting on upstream futures blocks, so an async run
    does it off the event loop (only when there is something to wait for)."""
    if not inputs_ready(parameters, wait_for):
        return (yield Blocking(resolve_inputs, parameters, wait_for))  # type: ignore[no-any-return]
    return resolve_inputs(parameters, None)
