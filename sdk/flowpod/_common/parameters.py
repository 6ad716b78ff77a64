"""Call parameters: binding arguments to a signature, reserved names, and flow parameter validation.

Binding is on the hot path of every task call, so the signature is computed once per function
(``CallSpec``) and plain positional/keyword calls skip ``inspect.Signature.bind``. Validation of
flow parameters against type hints imports pydantic only when some value is not already an instance
of its (plain class) annotation.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

from flowpod.exceptions import ParameterTypeError, ReservedArgumentError, SignatureMismatchError

__all__ = ["RESERVED_NAMES", "CallSpec", "validate_parameters"]

RESERVED_NAMES = ("return_state", "wait_for")
_PLAIN_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_EMPTY = inspect.Parameter.empty


class CallSpec:
    """What the engine needs to know about a function's signature, computed once."""

    __slots__ = ("fn", "signature", "names", "defaults", "plain", "n_positional", "_adapters")

    def __init__(self, fn: Callable[..., Any], kind: str) -> None:
        self.fn = fn
        try:
            self.signature = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Cannot read the signature of {fn!r} ({exc}).") from exc
        for name in RESERVED_NAMES:
            if name in self.signature.parameters:
                raise ReservedArgumentError(
                    f"{kind} function {getattr(fn, '__name__', fn)!r} has a parameter named "
                    f"{name!r}, which flowpod reserves for the call itself. Rename the parameter."
                )
        params = list(self.signature.parameters.values())
        self.names = tuple(p.name for p in params)
        self.defaults = {p.name: p.default for p in params if p.default is not _EMPTY}
        self.plain = all(p.kind in _PLAIN_KINDS for p in params)
        self.n_positional = sum(
            1 for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self._adapters: dict[str, Any] | None = None

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The parameters of a call, by name, defaults included."""
        if self.plain and len(args) <= self.n_positional:
            params = dict(zip(self.names, args, strict=False))
            ok = True
            for name, value in kwargs.items():
                if name in params or name not in self.defaults and name not in self.names:
                    ok = False
                    break
                params[name] = value
            if ok and len(params) != len(self.names):
                for name in self.names:
                    if name not in params:
                        if name not in self.defaults:
                            ok = False
                            break
                        params[name] = self.defaults[name]
            if ok:
                return self._ordered(params)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise SignatureMismatchError(
                f"Arguments do not match the signature of "
                f"{getattr(self.fn, '__qualname__', self.fn)}{self.signature}: {exc}."
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)

    def _ordered(self, params: dict[str, Any]) -> dict[str, Any]:
        if kwargs_out_of_order(params, self.names):
            return {name: params[name] for name in self.names}
        return params

    def to_call(self, params: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Positional and keyword arguments that reproduce ``params``."""
        if self.plain:
            return (), params
        bound = inspect.BoundArguments(self.signature, params)
        return bound.args, bound.kwargs

    # -- validation of flow parameters ---------------------------------------------------------

    def validate(self, params: dict[str, Any], flow_name: str) -> dict[str, Any]:
        """Coerce ``params`` to the function's type hints (pydantic only if something differs)."""
        hints = _hints(self.fn)
        if not hints:
            return params
        needs_pydantic = False
        for name, value in params.items():
            hint = hints.get(name)
            if hint is None or hint is Any:
                continue
            if isinstance(hint, type) and not _is_generic_alias(hint) and isinstance(value, hint):
                continue
            needs_pydantic = True
            break
        if not needs_pydantic:
            return params
        return self._validate_with_pydantic(params, hints, flow_name)

    def _validate_with_pydantic(
        self, params: dict[str, Any], hints: dict[str, Any], flow_name: str
    ) -> dict[str, Any]:
        import pydantic

        if self._adapters is None:
            self._adapters = {}
        result = dict(params)
        kinds = {p.name: p.kind for p in self.signature.parameters.values()}
        for name, value in params.items():
            hint = hints.get(name)
            if hint is None or hint is Any:
                continue
            kind = kinds.get(name)
            if kind is inspect.Parameter.VAR_POSITIONAL:
                hint = tuple[hint, ...]  # type: ignore[valid-type]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                hint = dict[str, hint]  # type: ignore[valid-type]
            adapter = self._adapters.get(name)
            if adapter is None:
                try:
                    adapter = pydantic.TypeAdapter(hint, config=_config(hint))
                except pydantic.PydanticSchemaGenerationError:
                    continue  # an annotation pydantic cannot check: leave the value as is
                self._adapters[name] = adapter
            try:
                result[name] = adapter.validate_python(value)
            except pydantic.ValidationError as exc:
                details = "; ".join(err["msg"] for err in exc.errors())
                raise ParameterTypeError(
                    f"Flow {flow_name!r}: parameter {name!r} got {value!r} "
                    f"({type(value).__name__}), which does not match its type hint "
                    f"{_hint_name(hint)}: {details}. Pass a matching value, or decorate with "
                    f"@flow(validate_parameters=False) to skip validation."
                ) from None
        return result


def kwargs_out_of_order(params: dict[str, Any], names: tuple[str, ...]) -> bool:
    for got, expected in zip(params, names, strict=False):
        if got != expected:
            return True
    return False


def _config(hint: Any) -> Any:
    if isinstance(hint, type) and hasattr(hint, "model_config"):
        return None  # pydantic models carry their own config
    return {"arbitrary_types_allowed": True}


def _is_generic_alias(hint: Any) -> bool:
    return typing.get_origin(hint) is not None


def _hint_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or repr(hint)


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - some annotation does not resolve: take them one by one
        hints = {}
        namespace = getattr(fn, "__globals__", {})
        for name, annotation in getattr(fn, "__annotations__", {}).items():
            if not isinstance(annotation, str):
                hints[name] = annotation
                continue
            try:
                hints[name] = eval(annotation, namespace)  # noqa: S307 - the user's own annotation
            except Exception:  # noqa: BLE001 - e.g. a class local to a function: leave unchecked
                continue
    hints.pop("return", None)
    return hints


def validate_parameters(spec: CallSpec, params: dict[str, Any], flow_name: str) -> dict[str, Any]:
    return spec.validate(params, flow_name)
