"""The current task run: ``id``, ``name``, ``task_name``, ``parameters``, ``tags``, ``run_count``.

Also ``flow_run_id``, ``task_key`` and ``parent_task_run_id``. Outside a task run every attribute
has an empty value (None, ``{}``, ``[]``, 0).

Each attribute also has a getter function (``get_name()``, ``get_run_count()``, ...), as in
Prefect.
"""

# ruff: noqa: F822 - the names in __all__ are served by the module __getattr__
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowpod.runtime._facts import common_getters, module_getattr

__all__ = [
    "flow_run_id",
    "get_flow_run_id",
    "get_id",
    "get_name",
    "get_parameters",
    "get_parent_task_run_id",
    "get_run_count",
    "get_tags",
    "get_task_key",
    "get_task_name",
    "id",
    "name",
    "parameters",
    "parent_task_run_id",
    "run_count",
    "tags",
    "task_key",
    "task_name",
]


def _run() -> Any:
    from flowpod.context import TaskRunContext

    ctx = TaskRunContext.get()
    return None if ctx is None else ctx.task_run


get_id, get_name, get_parameters, get_tags, get_run_count = common_getters(
    _run, "flowpod.runtime.task_run"
)


def get_task_name() -> str | None:
    run = _run()
    return None if run is None else run.task_name


def get_flow_run_id() -> str | None:
    run = _run()
    return None if run is None or run.flow_run_id is None else str(run.flow_run_id)


def get_task_key() -> str | None:
    run = _run()
    return None if run is None else run.task_key


def get_parent_task_run_id() -> str | None:
    run = _run()
    return None if run is None or run.parent_task_run_id is None else str(run.parent_task_run_id)


_FIELDS: dict[str, Callable[[], Any]] = {
    "id": get_id,
    "name": get_name,
    "task_name": get_task_name,
    "parameters": get_parameters,
    "tags": get_tags,
    "run_count": get_run_count,
    "flow_run_id": get_flow_run_id,
    "task_key": get_task_key,
    "parent_task_run_id": get_parent_task_run_id,
}


__getattr__ = module_getattr("flowpod.runtime.task_run", _FIELDS)


def __dir__() -> list[str]:
    return sorted(__all__)
