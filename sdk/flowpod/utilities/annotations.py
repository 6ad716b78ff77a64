"""Wrappers that change how the engine treats an argument: unmapped, quote, allow_failure.

- ``unmapped(x)``: in ``.map()``, pass ``x`` whole to every call instead of iterating it.
- ``quote(x)``: pass ``x`` as is; the engine does not look inside it for futures (and ``.map()``
  does not iterate it).
- ``allow_failure(future)``: wait for the upstream but run even if it failed; the argument receives
  the upstream's exception in place of its result.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["BaseAnnotation", "allow_failure", "quote", "unmapped"]

T = TypeVar("T")


class BaseAnnotation(Generic[T]):
    """A one-value wrapper; ``unwrap()`` gives the value back."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def unwrap(self) -> T:
        return self.value

    def rewrap(self, value: T) -> BaseAnnotation[T]:
        return type(self)(value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.value == other.value

    def __hash__(self) -> int:
        return hash((type(self), id(self.value)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.value!r})"


class unmapped(BaseAnnotation[T]):  # noqa: N801 - lower-case to match the public API
    """Pass the value to every call of ``.map()`` instead of iterating it."""

    __slots__ = ()

    def __getitem__(self, _index: int) -> T:
        return self.value


class quote(BaseAnnotation[T]):  # noqa: N801
    """Pass the value untouched: not searched for futures, not iterated by ``.map()``."""

    __slots__ = ()


class allow_failure(BaseAnnotation[T]):  # noqa: N801
    """Run the downstream task even if this upstream future failed."""

    __slots__ = ()


def unwrap_annotation(value: Any) -> Any:
    """The wrapped value if ``value`` is an annotation, else ``value``."""
    return value.value if isinstance(value, BaseAnnotation) else value
