"""The current flow run: ``id``, ``name``, ``flow_name``, ``parameters``, ``tags``, ``run_count``.

Also ``parent_flow_run_id`` and ``parent_task_run_id``. Outside a flow run every attribute has an
empty value (None, ``{}``, ``[]``, 0).

Each attribute also has a getter function (``get_name()``, ``get_run_count()``, ...), as in
Prefect.
"""

# ruff: noqa: F822 - the names in __all__ are served by the module __getattr__
from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "flow_name",
    "get_flow_name",
    "get_id",
    "get_name",
    "get_parameters",
    "get_parent_flow_run_id",
    "get_parent_task_run_id",
    "get_run_count",
    "get_tags",
    "id",
    "name",
    "parameters",
    "parent_flow_run_id",
    "parent_task_run_id",
    "run_count",
    "tags",
]


def _run() -> Any:
    from flowpod.context import FlowRunContext

    ctx = FlowRunContext.get()
    return None if ctx is None else ctx.flow_run


def get_id() -> str | None:
    run = _run()
    return None if run is None else str(run.id)


def get_name() -> str | None:
    run = _run()
    return None if run is None else run.name


def get_flow_name() -> str | None:
    run = _run()
    return None if run is None else run.flow_name


def get_parameters() -> dict[str, Any]:
    run = _run()
    return {} if run is None else dict(run.parameters)


def get_tags() -> list[str]:
    run = _run()
    return [] if run is None else list(run.tags)


def get_run_count() -> int:
    run = _run()
    return 0 if run is None else int(run.run_count)


def get_parent_flow_run_id() -> str | None:
    run = _run()
    return None if run is None or run.parent_flow_run_id is None else str(run.parent_flow_run_id)


def get_parent_task_run_id() -> str | None:
    run = _run()
    return None if run is None or run.parent_task_run_id is None else str(run.parent_task_run_id)


_FIELDS: dict[str, Callable[[], Any]] = {
    "id": get_id,
    "name": get_name,
    "flow_name": get_flow_name,
    "parameters": get_parameters,
    "tags": get_tags,
    "run_count": get_run_count,
    "parent_flow_run_id": get_parent_flow_run_id,
    "parent_task_run_id": get_parent_task_run_id,
}


def __getattr__(attr: str) -> Any:
    getter = _FIELDS.get(attr)
    if getter is None:
        raise AttributeError(
            f"flowpod.runtime.flow_run has no attribute {attr!r}; available: "
            f"{', '.join(sorted(_FIELDS))}."
        )
    return getter()


def __dir__() -> list[str]:
    return sorted(__all__)
