"""Serializers of stored values: ``pickle`` (cloudpickle, the default) and ``json``.

``get_serializer(name)`` is how every reader and writer of results picks one; the name travels
with the value (in an outcome or a cache record, see ``flowpod._contract.records.ResultRef``).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from flowpod.exceptions import ConfigurationError, SerializationError

__all__ = ["JSONSerializer", "PickleSerializer", "Serializer", "get_serializer"]


class Serializer(Protocol):
    name: str

    def dumps(self, obj: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _dump_error(serializer: str, obj: Any, exc: BaseException) -> SerializationError:
    other = "json" if serializer == "pickle" else "pickle"
    return SerializationError(
        f"the {serializer!r} serializer cannot serialise a value of type "
        f"{type(obj).__qualname__} ({type(exc).__name__}: {exc}). Fix: return a value it "
        f"supports, choose result_serializer={other!r}, or set persist_result=False (and no "
        f"cache policy) so the result is not stored"
    )


class PickleSerializer:
    """cloudpickle: any Python value, including lambdas and classes defined in __main__."""

    name = "pickle"

    def dumps(self, obj: Any) -> bytes:
        import cloudpickle  # lazy: ~10 ms, and only runs that persist results need it

        try:
            data: bytes = cloudpickle.dumps(obj, protocol=5)
        except Exception as exc:
            raise _dump_error(self.name, obj, exc) from exc
        return data

    def loads(self, data: bytes) -> Any:
        import pickle

        try:
            return pickle.loads(data)
        except Exception as exc:
            raise SerializationError(
                f"cannot load a pickled result ({type(exc).__name__}: {exc}); the code that "
                "defined its type may have changed or be missing from this environment"
            ) from exc


class JSONSerializer:
    """Plain JSON: portable and readable, for dicts, lists, strings, numbers, booleans, None."""

    name = "json"

    def dumps(self, obj: Any) -> bytes:
        try:
            return json.dumps(obj, allow_nan=True).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise _dump_error(self.name, obj, exc) from exc

    def loads(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except ValueError as exc:
            raise SerializationError(f"stored result is not valid JSON: {exc}") from exc


_SERIALIZERS: dict[str, Serializer] = {
    "pickle": PickleSerializer(),
    "cloudpickle": PickleSerializer(),
    "json": JSONSerializer(),
}


def get_serializer(name: str) -> Serializer:
    """The serializer called ``name`` ("pickle" or "json")."""
    try:
        return _SERIALIZERS[name.lower() if isinstance(name, str) else name]
    except (KeyError, TypeError):
        raise ConfigurationError(
            f"unknown result serializer {name!r}; use 'pickle' (any Python value, the default) "
            "or 'json'"
        ) from None
