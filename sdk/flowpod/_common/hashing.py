"""Stable hashes of Python values: cache keys, task keys and ``task_input_hash``.

A hash must name the same value in every process and on every machine (a cache record written by a
pod is found by the next flow run on a laptop), so nothing here uses ``hash()`` or ``id()``.
Values are first written as canonical JSON (sorted keys, no whitespace; sets, bytes, dates,
decimals, UUIDs, paths and enums get tagged encodings so they stay canonical too). Only what JSON
cannot express falls back to cloudpickle, whose bytes are stable for a given value and library
version but not guaranteed across versions.

Like any JSON-based key, a tuple hashes like the equal list, and a dict key that is an int, float,
bool or None hashes like its JSON string form ({1: "a"} like {"1": "a"}). Telling those apart would
need a Python-level walk of every argument, roughly doubling the cost of hashing large inputs.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
import pathlib
from collections.abc import Callable, Iterable
from typing import Any

from flowpod.exceptions import UnhashableInputError

__all__ = [
    "compute_task_key",
    "hash_objects",
    "source_text",
    "stable_json",
    "task_input_hash",
]


def _encode_extra(value: Any) -> Any:
    """JSON ``default=`` hook: a tagged, canonical form for common non-JSON types."""
    import decimal  # lazy: only reached for values plain JSON cannot express
    import uuid

    if isinstance(value, bytes | bytearray | memoryview):
        return {"__bytes__": bytes(value).hex()}
    if isinstance(value, set | frozenset):
        # Set iteration order depends on PYTHONHASHSEED: sort the members' canonical encodings.
        return {"__set__": sorted(stable_json(item) for item in value)}
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__module__}.{type(value).__qualname__}.{value.name}"}
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return {f"__{type(value).__name__}__": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"__timedelta__": [value.days, value.seconds, value.microseconds]}
    if isinstance(value, decimal.Decimal | uuid.UUID | pathlib.PurePath):
        return {f"__{type(value).__name__}__": str(value)}
    if isinstance(value, complex):
        return {"__complex__": [value.real, value.imag]}
    raise TypeError(f"{type(value).__qualname__} is not JSON-encodable")


# One encoder for every call: json.dumps() with options builds a new JSONEncoder each time,
# which is a third of the cost of hashing a small argument dict.
_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=True,
    default=_encode_extra,
)


def stable_json(value: Any) -> str:
    """Canonical JSON of ``value``; raises TypeError/ValueError when JSON cannot express it."""
    return _ENCODER.encode(value)


def _serialise(objects: tuple[Any, ...]) -> bytes:
    try:
        # The "json:" / "pickle:" prefixes keep the two encodings from ever colliding.
        return b"json:" + stable_json(objects).encode("utf-8", "surrogatepass")
    except (TypeError, ValueError, RecursionError):
        pass  # not JSON-able (or cyclic): cloudpickle below
    import cloudpickle  # lazy: only values JSON cannot express pay its import

    pickled: bytes = cloudpickle.dumps(objects, protocol=5)
    return b"pickle:" + pickled


def hash_objects(*objects: object, raise_on_failure: bool = False) -> str | None:
    """sha256 hex of the objects' canonical serialisation, or None if they cannot be serialised.

    With ``raise_on_failure=True`` a failure raises UnhashableInputError carrying the cause.
    """
    try:
        data = _serialise(objects)
    except Exception as exc:
        if raise_on_failure:
            kinds = ", ".join(sorted({type(obj).__qualname__ for obj in objects}))
            raise UnhashableInputError(
                f"cannot hash a value of type(s) {kinds}: neither JSON nor cloudpickle can "
                f"serialise it ({type(exc).__name__}: {exc})"
            ) from exc
        return None
    return hashlib.sha256(data).hexdigest()


# getsource() reads and tokenises the file (tens of microseconds); the TASK_SOURCE policy asks
# for it on every run, so remember it per code object. Bounded in case code is generated.
_SOURCE_CACHE: dict[object, str] = {}
_SOURCE_CACHE_LIMIT = 4096


def _code_fingerprint(code: Any) -> str:
    """Bytecode plus constants, recursing into nested code objects (whose repr holds an address)."""
    parts = [code.co_code.hex()]
    for const in code.co_consts:
        if isinstance(const, type(code)):
            parts.append("<" + _code_fingerprint(const) + ">")
        else:
            parts.append(repr(const))
    parts.append(repr(code.co_names))
    return "|".join(parts)


def _unwrap_callable(fn: Any) -> Any:
    # Follow functools.wraps chains to the user's function, as inspect.unwrap does.
    seen = 0
    while hasattr(fn, "__wrapped__") and seen < 100:
        fn, seen = fn.__wrapped__, seen + 1
    return getattr(fn, "__func__", fn)  # bound methods, classmethod/staticmethod objects


def source_text(fn: Callable[..., Any]) -> str:
    """The function's source; without source (REPL, exec), its bytecode and constants instead."""
    target = _unwrap_callable(fn)
    code = getattr(target, "__code__", None)
    cache_key: object = code if code is not None else target
    try:
        cached = _SOURCE_CACHE.get(cache_key)
    except TypeError:  # an unhashable callable object
        cache_key, cached = None, None
    if cached is not None:
        return cached
    import inspect  # lazy: ~8 ms to import, and only source-based cache policies need it

    try:
        text = inspect.getsource(target)
    except (OSError, TypeError):
        if code is not None:
            text = _code_fingerprint(code)
        else:
            text = f"{getattr(target, '__module__', '')}.{_qualname(target)}"
    if cache_key is not None:
        if len(_SOURCE_CACHE) >= _SOURCE_CACHE_LIMIT:
            _SOURCE_CACHE.clear()
        _SOURCE_CACHE[cache_key] = text
    return text


def _qualname(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


def compute_task_key(name: str, fn: Callable[..., Any], tags: Iterable[str]) -> str:
    """``<name>-<16 hex>`` of the task name, ``module.qualname`` of the function, sorted tags."""
    target = _unwrap_callable(fn)
    qualified = f"{getattr(target, '__module__', None) or ''}.{_qualname(target)}"
    digest = hashlib.sha256(
        json.dumps([name, qualified, sorted(tags)], separators=(",", ":")).encode()
    ).hexdigest()
    return f"{name}-{digest[:16]}"


def task_input_hash(context: Any, arguments: dict[str, Any]) -> str | None:
    """A ``cache_key_fn``: the task key, the function's source and the arguments, hashed.

    Returns None (the run is not cached) when the arguments cannot be serialised.
    """
    task = context.task
    fn = getattr(task, "fn", None)
    source = source_text(fn) if fn is not None else ""
    return hash_objects(task.task_key, source, arguments)
