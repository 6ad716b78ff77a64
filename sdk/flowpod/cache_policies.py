"""Cache policies: how a task run's cache key is computed from its context and inputs.

A policy's ``compute_key(task_ctx, inputs, flow_parameters, **kwargs)`` returns a key, or None for
"do not cache". Policies combine: ``a + b`` is a CompoundCachePolicy (flattened) whose key hashes
the non-None keys of its parts, ``policy - "name"`` excludes an input. ``DEFAULT`` is
``INPUTS + TASK_SOURCE + RUN_ID``: the run id makes plain tasks cache only within one flow run.
Keys are hashed with ``flowpod._common.hashing`` so they are stable across processes and machines.
An input that cannot be hashed raises UnhashableInputError naming it; the engine logs that and
runs the task uncached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from flowpod.exceptions import UnhashableInputError

__all__ = [
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "DEFAULT",
    "FLOW_PARAMETERS",
    "FlowParameters",
    "INPUTS",
    "Inputs",
    "NO_CACHE",
    "RUN_ID",
    "RunId",
    "TASK_SOURCE",
    "TaskSource",
]


class CachePolicy:
    """Base class: subclasses implement ``compute_key``."""

    def compute_key(
        self,
        task_ctx: Any,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        raise NotImplementedError

    @classmethod
    def from_cache_key_fn(
        cls, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]
    ) -> CachePolicy:
        """A policy that calls ``cache_key_fn(task_ctx, inputs)``."""
        return CacheKeyFnPolicy(cache_key_fn)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        if not isinstance(other, CachePolicy):
            return NotImplemented
        if isinstance(other, _NoCache):
            return self
        if isinstance(self, _NoCache):
            return other
        parts: list[CachePolicy] = []
        for policy in (self, other):
            if isinstance(policy, CompoundCachePolicy):
                parts.extend(policy.policies)
            else:
                parts.append(policy)
        return CompoundCachePolicy(parts)

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            raise TypeError(f"Only parameter names (str) can be subtracted from a cache policy; "
                            f"got {type(name).__name__}.")
        return CompoundCachePolicy([self, Inputs(exclude=[name])])

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(type(self).__name__)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class _NoCache(CachePolicy):
    """Never cache (the key is always None)."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return None

    def __repr__(self) -> str:
        return "NO_CACHE"


class Inputs(CachePolicy):
    """Hash of the call's parameters (defaults included), minus ``exclude``."""

    def __init__(self, exclude: Iterable[str] | None = None) -> None:
        if isinstance(exclude, str):
            raise TypeError("Inputs(exclude=...) takes a list of parameter names, not one string.")
        self.exclude = list(exclude or [])

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        from flowpod._common.hashing import hash_objects

        kept = {k: v for k, v in inputs.items() if k not in self.exclude}
        key = hash_objects(kept)
        if key is not None:
            return key
        task_name = getattr(getattr(task_ctx, "task", None), "name", "?")
        for name, value in kept.items():
            if hash_objects(value) is None:
                raise _unhashable(task_name, name, value)
        raise _unhashable(task_name, ", ".join(kept), inputs)

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            raise TypeError("Only parameter names (str) can be subtracted from a cache policy.")
        return Inputs(exclude=[*self.exclude, name])


def _unhashable(task_name: str, name: str, value: Any) -> UnhashableInputError:
    try:
        from flowpod._common.hashing import hash_objects

        hash_objects(value, raise_on_failure=True)
        cause = ""
    except UnhashableInputError as exc:
        cause = f" ({exc.__cause__!r})" if exc.__cause__ is not None else f" ({exc})"
    return UnhashableInputError(
        f"Task {task_name!r} cannot compute its cache key: the input {name!r} of type "
        f"{type(value).__name__} cannot be hashed{cause}. Either pass cache_key_fn= a function "
        f"that leaves it out (or cache_policy=INPUTS - {name!r}), or turn caching off for this "
        f"task with cache_policy=NO_CACHE."
    )


class TaskSource(CachePolicy):
    """Hash of the task function's source text: editing the code invalidates the cache."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        from flowpod._common.hashing import hash_objects, source_text

        task = getattr(task_ctx, "task", None)
        if task is None:
            return None
        return hash_objects(source_text(task.fn))


class RunId(CachePolicy):
    """The flow run id (the task run id outside a flow): caching within one run only."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        task_run = getattr(task_ctx, "task_run", None)
        if task_run is None:
            return None
        run_id = task_run.flow_run_id or task_run.id
        return str(run_id)


class FlowParameters(CachePolicy):
    """Hash of the flow run's parameters."""

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        from flowpod._common.hashing import hash_objects

        if not flow_parameters:
            return None
        return hash_objects(flow_parameters)


class CacheKeyFnPolicy(CachePolicy):
    """Delegates to a user function ``cache_key_fn(task_ctx, inputs) -> str | None``."""

    def __init__(self, cache_key_fn: Callable[[Any, dict[str, Any]], str | None]) -> None:
        self.cache_key_fn = cache_key_fn

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        return self.cache_key_fn(task_ctx, inputs)


class CompoundCachePolicy(CachePolicy):
    """Several policies at once: the key hashes the non-None keys of the parts (None if none)."""

    def __init__(self, policies: Iterable[CachePolicy]) -> None:
        flat: list[CachePolicy] = []
        for policy in policies:
            if isinstance(policy, CompoundCachePolicy):
                flat.extend(policy.parts())
            elif not isinstance(policy, _NoCache):
                flat.append(policy)
        self.policies: list[CachePolicy] = flat

    def parts(self) -> list[CachePolicy]:
        return list(self.policies)

    def compute_key(self, task_ctx: Any, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        from flowpod._common.hashing import hash_objects

        keys = [
            key
            for policy in self.policies
            if (key := policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)) is not None
        ]
        if not keys:
            return None
        return hash_objects(*keys)

    def __sub__(self, name: str) -> CachePolicy:
        if not isinstance(name, str):
            raise TypeError("Only parameter names (str) can be subtracted from a cache policy.")
        changed = False
        parts: list[CachePolicy] = []
        for policy in self.policies:
            if isinstance(policy, Inputs):
                parts.append(policy - name)
                changed = True
            else:
                parts.append(policy)
        if not changed:
            parts.append(Inputs(exclude=[name]))
        return CompoundCachePolicy(parts)


NO_CACHE: CachePolicy = _NoCache()
INPUTS: CachePolicy = Inputs()
TASK_SOURCE: CachePolicy = TaskSource()
RUN_ID: CachePolicy = RunId()
FLOW_PARAMETERS: CachePolicy = FlowParameters()
DEFAULT: CachePolicy = INPUTS + TASK_SOURCE + RUN_ID
