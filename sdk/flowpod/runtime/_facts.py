"""What ``flowpod.runtime.task_run`` and ``flowpod.runtime.flow_run`` share: the getters of the
facts every run has, and the module ``__getattr__`` that serves each fact as an attribute."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["common_getters", "module_getattr"]


def common_getters(run: Callable[[], Any], module: str) -> tuple[
    Callable[[], str | None],
    Callable[[], str | None],
    Callable[[], dict[str, Any]],
    Callable[[], list[str]],
    Callable[[], int],
]:
    """``get_id``, ``get_name``, ``get_parameters``, ``get_tags``, ``get_run_count`` over
    ``run()`` (the current run record, or None outside one), as functions of ``module``."""

    def get_id() -> str | None:
        current = run()
        return None if current is None else str(current.id)

    def get_name() -> str | None:
        current = run()
        return None if current is None else str(current.name)

    def get_parameters() -> dict[str, Any]:
        current = run()
        return {} if current is None else dict(current.parameters)

    def get_tags() -> list[str]:
        current = run()
        return [] if current is None else list(current.tags)

    def get_run_count() -> int:
        current = run()
        return 0 if current is None else int(current.run_count)

    getters = (get_id, get_name, get_parameters, get_tags, get_run_count)
    for getter in getters:
        getter.__module__ = module
        getter.__qualname__ = getter.__name__
    return getters


def module_getattr(module: str, fields: dict[str, Callable[[], Any]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` (PEP 562) that reads ``fields[attr]()`` when accessed."""

    def __getattr__(attr: str) -> Any:  # noqa: N807 - it is the module's __getattr__
        getter = fields.get(attr)
        if getter is None:
            raise AttributeError(
                f"{module} has no attribute {attr!r}; available: {', '.join(sorted(fields))}."
            )
        return getter()

    return __getattr__
