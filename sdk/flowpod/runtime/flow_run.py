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

from flowpod.runtime._facts import common_getters, module_getattr

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


get_id, get_name, get_parameters, get_tags, get_run_count = common_getters(
    _run, "flowpod.runtime.flow_run"
)


def get_flow_name() -> str | None:
    run = _run()
    return None if run is None else run.flow_name


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


__getattr__ = module_getattr("flowpod.runtime.flow_run", _FIELDS)


def __dir__() -> list[str]:
    return sorted(__all__)
